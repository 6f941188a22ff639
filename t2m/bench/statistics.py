"""The bench's statistics: paired bootstrap intervals over the evaluator's own per-row statistics.

Every number comes from :mod:`evaluation`: ``evaluate_text2mol`` / ``evaluate_mol2text`` with ``per_row=True``
keep what they computed for each row (:class:`evaluation.rows.RowStatistics`, here also called
:data:`RowScores`), from which a corpus metric follows on any resample of the rows.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from evaluation import evaluate_mol2text, evaluate_text2mol
from evaluation.meteor import MeteorScorer
from evaluation.rows import RowStatistics
from evaluation.text_tokenizer import TextTokenizer
from t2m.bench.config import LOWER_IS_BETTER
from t2m.tasks import TEXT2MOL

RowScores = RowStatistics  # the name the bench has always used


def evaluate(task: str, references: Sequence[str], outputs: Sequence[str], fcd: bool,
             caption_scorer: "CaptionScorer | None" = None) -> Any:
    """``t2m eval``'s full metric set of ``outputs``, with its per-row statistics (``result.rows``)."""
    if task == TEXT2MOL:
        return evaluate_text2mol(list(references), list(outputs), fcd=fcd, per_row=True)
    return (caption_scorer or CaptionScorer()).evaluate(references, outputs)


def row_scores(task: str, references: Sequence[str], outputs: Sequence[str],
               caption_scorer: "CaptionScorer | None" = None) -> RowStatistics:
    """The evaluator's per-row statistics alone (without FCD and sacrebleu, which have no per-row form)."""
    if task == TEXT2MOL:
        return text2mol_row_scores(references, outputs)
    return (caption_scorer or CaptionScorer())(references, outputs)


def text2mol_row_scores(references: Sequence[str], outputs: Sequence[str]) -> RowStatistics:
    """Per-row text2mol statistics (MolT5 mode), as :func:`evaluation.evaluate_text2mol` counts them."""
    return evaluate_text2mol(list(references), list(outputs), fcd=False, sacrebleu=False, per_row=True).rows


class CaptionScorer:
    """:func:`evaluation.evaluate_mol2text` with its tokenizer (SciBERT WordPiece) and METEOR scorer loaded
    once, for every system of the bench (loading them first also fails early when one is missing)."""

    def __init__(self) -> None:
        self.tokenizer = TextTokenizer.load()
        self.meteor = MeteorScorer.for_vocabulary(self.tokenizer.vocabulary, self.tokenizer.vocab_sha256)

    def evaluate(self, references: Sequence[str], outputs: Sequence[str], sacrebleu: bool = True) -> Any:
        """The full mol2text metric set, with the per-row statistics (``result.rows``)."""
        return evaluate_mol2text(list(references), list(outputs), tokenizer=self.tokenizer, meteor_scorer=self.meteor,
                                 sacrebleu=sacrebleu, per_row=True)

    def __call__(self, references: Sequence[str], outputs: Sequence[str]) -> RowStatistics:
        """Per-row mol2text statistics."""
        return self.evaluate(references, outputs, sacrebleu=False).rows


def row_key(rows: RowStatistics, i: int) -> tuple[float, ...]:
    """How good row ``i`` is by the task's headline metric (for picking best / worst examples):
    text2mol (exact, Morgan Tanimoto or -1); mol2text (sentence BLEU-4, METEOR)."""
    v = rows.values
    if rows.task == TEXT2MOL:
        sim = v["morgan"][i]
        return (float(v["exact"][i]), -1.0 if math.isnan(sim) else float(sim))
    return (rows.row("bleu4", i), float(v["meteor"][i]))


def paired_bootstrap(system: RowStatistics, baseline: RowStatistics, metric: str, samples: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of ``metric(system) - metric(baseline)`` over rows (Koehn 2004; sacrebleu's
    ``--paired-bs``): the same resampled rows for both systems, the corpus metric recomputed on each
    resample. Returns the observed difference, the 95% percentile interval, and the share of resamples
    in which the system is not better (a one-sided p-value estimate)."""
    n = len(system)
    if len(baseline) != n:
        raise ValueError(f"paired bootstrap needs the same rows: {n} vs {len(baseline)}")
    observed = system.corpus(metric) - baseline.corpus(metric)
    rng = np.random.default_rng(seed)
    deltas_parts = []
    for start in range(0, samples, 200):  # (200, n) row counts at a time
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(200, samples - start))
        deltas_parts.append(system.corpus_many(metric, counts) - baseline.corpus_many(metric, counts))
    deltas = np.concatenate(deltas_parts) if deltas_parts else np.array([])
    deltas = deltas[np.isfinite(deltas)]
    if not math.isfinite(observed):  # e.g. Morgan FTS of a system none of whose outputs parse
        deltas = np.array([])
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    low, high = (np.percentile(deltas, [2.5, 97.5]) if len(deltas) else (np.nan, np.nan))
    return {
        "metric": metric, "delta": observed, "ci95": [float(low), float(high)],
        "samples": int(len(deltas)), "p_not_better": float(np.mean(sign * deltas <= 0)) if len(deltas) else None,
        "excludes_zero": bool(len(deltas) and (low > 0 or high < 0)),
    }
