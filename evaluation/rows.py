"""Per-row statistics of the corpus metrics, so that a corpus metric can be recomputed on any resample of rows.

Paired bootstrap resampling (Koehn 2004; sacrebleu's ``--paired-bs``) needs each metric on thousands of
resamples of the rows. The evaluator keeps, with ``per_row=True``, what it computed for each row on the
way to its corpus numbers (:attr:`evaluation.result.EvalResult.rows`): corpus values of the resampled
rows follow from sums of these, without scoring any string again.

>>> from evaluation import evaluate_text2mol
>>> rows = evaluate_text2mol(["CCO", "c1ccccc1"], ["CCO", "C1CC1"], fcd=False, per_row=True).rows
>>> rows.corpus("exact_match"), rows.corpus("exact_match", weights=np.array([2, 1]))
(0.5, 0.6666666666666666)

What each task keeps (``values``, one entry per row):

- text2mol: ``exact`` (counts as an exact match), ``valid`` (counts as valid), ``parsed`` (counts in the
  denominator of the fingerprint similarities: the rows whose output parses in MolT5 mode, every row in
  strict mode), ``maccs`` / ``rdk`` / ``morgan`` Tanimoto similarities (NaN where not ``parsed``; 0 for an
  invalid output in strict mode);
- mol2text: ``ngrams`` (rows, 10): clipped matches of orders 1-4, n-gram counts of orders 1-4 (nltk's
  ``max(1, .)``), hypothesis length, reference length -- summed over rows, the corpus BLEU statistics;
  ``meteor``: the row's sentence METEOR.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# metric -> the values it is computed from
_FRACTIONS = {"exact_match": "exact", "validity": "valid"}
_SIMILARITIES = {"maccs_fts": "maccs", "rdk_fts": "rdk", "morgan_fts": "morgan"}
_BLEU_WEIGHTS = {"bleu4": (0.25,) * 4, "bleu2": (0.5, 0.5)}
METRICS = {"text2mol": (*_FRACTIONS, *_SIMILARITIES), "mol2text": (*_BLEU_WEIGHTS, "meteor")}


@dataclass(frozen=True)
class RowStatistics:
    """What the evaluator computed per row on the way to its corpus metrics (see the module's docstring)."""

    task: str
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))

    def head(self, n: int) -> "RowStatistics":
        """The first ``n`` rows' statistics."""
        return type(self)(self.task, {k: v[:n] for k, v in self.values.items()})

    def corpus(self, metric: str, weights: np.ndarray | None = None) -> float:
        """The corpus value of ``metric`` with rows counted ``weights`` times (None: once each); equal to the
        evaluator's number for all rows once each (up to the order of floating-point sums)."""
        return float(self.corpus_many(metric, None if weights is None else np.asarray(weights)[None, :])[0])

    def row(self, metric: str, i: int) -> float:
        """``metric`` of row ``i`` alone (sentence BLEU for ``bleu4``, the row's own value otherwise)."""
        weights = np.zeros(len(self), dtype=np.int64)
        weights[i] = 1
        return self.corpus(metric, weights)

    def corpus_many(self, metric: str, counts: np.ndarray | None) -> np.ndarray:
        """Corpus ``metric`` for each row-count vector in ``counts`` (samples, n); None: all rows once."""
        counts = np.ones((1, len(self)), dtype=np.int64) if counts is None else counts
        v = self.values
        if metric in _FRACTIONS and self.task == "text2mol":
            return counts @ v[_FRACTIONS[metric]].astype(np.float64) / counts.sum(axis=1)
        if metric in _SIMILARITIES and self.task == "text2mol":
            parsed = v["parsed"].astype(np.float64)
            sims = np.nan_to_num(v[_SIMILARITIES[metric]], nan=0.0) * parsed
            denominator = counts @ parsed
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(denominator > 0, (counts @ sims) / np.maximum(denominator, 1e-300), np.nan)
        if metric == "meteor" and self.task == "mol2text":
            return counts @ v["meteor"] / counts.sum(axis=1)
        if metric in _BLEU_WEIGHTS and self.task == "mol2text":
            return _bleu_many(counts @ v["ngrams"], _BLEU_WEIGHTS[metric])
        raise KeyError(f"no per-row form of {self.task} metric {metric!r}: choose from {', '.join(METRICS[self.task])}")


def _bleu_many(sums: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """BLEU of each row of summed statistics (samples, 10), with the evaluator's own BLEU arithmetic."""
    from evaluation.bleu import NgramStats, bleu_from_stats

    out = np.empty(len(sums))
    with warnings.catch_warnings():  # (nltk's warning for an order without matches, once per resample)
        warnings.simplefilter("ignore")
        for i, s in enumerate(sums.astype(np.int64).tolist()):
            out[i] = bleu_from_stats(NgramStats(tuple(s[0:4]), tuple(s[4:8]), s[8], s[9]), weights)
    return out


def text2mol_rows(rows: Sequence, strict: bool = False) -> RowStatistics:
    """Per-row statistics from the evaluator's :class:`evaluation.molecules.RowScore` of each row, counted as
    :func:`evaluation.text2mol.evaluate_text2mol` counts them in MolT5 or ``strict`` mode."""
    if strict:
        valid = np.array([r.output_parsed and r.output_atoms > 0 for r in rows], dtype=bool)
        exact = np.array([r.inchi_equal and r.inchi_nonempty for r in rows], dtype=bool) & valid
        parsed = np.ones(len(rows), dtype=bool)
        sims = [r.similarities if (v and r.similarities) else (0.0, 0.0, 0.0) for r, v in zip(rows, valid)]
    else:
        exact = np.array([r.inchi_equal for r in rows], dtype=bool)
        valid = np.array([not r.inchi_failed for r in rows], dtype=bool)
        parsed = np.array([r.output_parsed and r.similarities is not None for r in rows], dtype=bool)
        sims = [r.similarities if p else (np.nan, np.nan, np.nan) for r, p in zip(rows, parsed)]
    table = np.array(sims, dtype=np.float64).reshape(len(rows), 3)
    return RowStatistics("text2mol", {"exact": exact, "valid": valid, "parsed": parsed, "maccs": table[:, 0],
                                      "rdk": table[:, 1], "morgan": table[:, 2]})


def mol2text_rows(reference_tokens: Sequence[Sequence[str]], output_tokens: Sequence[Sequence[str]],
                  meteor: Sequence[float]) -> RowStatistics:
    """Per-row statistics from the evaluator's tokens of each row and each row's METEOR."""
    from evaluation.bleu import ngram_stats

    ngrams = np.zeros((len(reference_tokens), 10), dtype=np.int64)
    for i, (r, h) in enumerate(zip(reference_tokens, output_tokens)):
        s = ngram_stats([r], [h], 4)
        ngrams[i] = [*s.numerators, *s.denominators, s.hyp_length, s.ref_length]
    return RowStatistics("mol2text", {"ngrams": ngrams, "meteor": np.asarray(meteor, dtype=np.float64)})
