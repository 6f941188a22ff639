"""mol2text metrics (SMILES -> description), exactly as MolT5's ``text_translation_metrics.py``.

- an output starting with ``"[CLS] "`` loses those 6 characters first (MolT5 does this, for all metrics);
- ``bleu2``, ``bleu4``: nltk corpus BLEU (weights .5/.5 and .25 x 4) over the text tokenizer's tokens
  (SciBERT WordPiece, see :mod:`evaluation.text_tokenizer`);
- ``meteor``: mean of nltk's sentence METEOR over the same tokens, with WordNet 3.0 synonyms
  (:mod:`evaluation.meteor`);
- ``rouge1``, ``rouge2``, ``rougeL``: mean rouge-score F-measures on the raw strings, called as
  ``score(output, reference)`` (:mod:`evaluation.rouge`);
- ``sacrebleu``: sacrebleu's corpus BLEU with its default 13a tokenizer (0-100), with its own signature.

Each metric is computed by its function in :mod:`evaluation.metrics`; this module runs them, ROUGE and
sacrebleu in a forked process for large inputs, and adds the signature. MolT5's text quirks (none change a
number here) are kept in ``strict`` mode too; the signature still records the mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from evaluation.result import EvalResult, PhaseTimer
from evaluation.signature import build_signature

METRIC_KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor", "sacrebleu")


def _rouge_and_sacrebleu(references: list[str], outputs: list[str], sacrebleu: bool):
    from evaluation.metrics import caption_rouge, caption_sacrebleu

    metrics: dict[str, float] = dict(caption_rouge(references, outputs))
    sacre_sig = None
    if sacrebleu:
        metrics["sacrebleu"], sacre_sig = caption_sacrebleu(references, outputs)
    return metrics, sacre_sig


def evaluate_mol2text(
    references: Sequence[str],
    outputs: Sequence[str],
    *,
    tokenizer=None,
    meteor_scorer=None,
    strict: bool = False,
    sacrebleu: bool = True,
    use_cache: bool = True,
    workers: int | None = None,
    per_row: bool = False,
) -> EvalResult:
    """Score generated descriptions ``outputs`` against ``references`` (row-aligned lists of str).

    ``tokenizer``: a :class:`~evaluation.text_tokenizer.TextTokenizer`, a directory / id to load one from,
    or None for the default SciBERT location (raises TokenizerNotFoundError if absent).
    ``meteor_scorer``: a :class:`~evaluation.meteor.MeteorScorer`; by default one for the tokenizer's
    vocabulary over WordNet 3.0 (raises WordNetMissingError, saying to run ``t2m setup``, if absent).
    ``workers``: with 2 (the default on a machine with 2+ cores) and enough rows, ROUGE and sacrebleu run
    in a forked process while this one tokenizes and computes BLEU and METEOR.
    ``per_row``: also keep each row's statistics in the result's ``rows`` (:class:`evaluation.rows.RowStatistics`).
    """
    import numpy as np

    from evaluation.metrics import (bleu_of_tokens, caption_tokens, check_rows, meteor_scorer_for,
                                    text_tokenizer)
    from evaluation.wordnet import require_wordnet
    from evaluation.workers import PARALLEL_MIN_ROWS, default_workers, fork_lane

    timer = PhaseTimer()
    references, outputs = list(references), list(outputs)
    check_rows(references, outputs)
    wordnet = meteor_scorer.location if meteor_scorer is not None else require_wordnet()  # fail early, before work
    tokenizer = text_tokenizer(tokenizer)
    workers = default_workers() if workers is None else workers
    # fork before the tokenizer's thread pool exists (tokenizers disables itself in children forked after)
    lane = fork_lane() if workers >= 2 and len(references) >= PARALLEL_MIN_ROWS else None
    try:
        side = lane.submit(_rouge_and_sacrebleu, references, outputs, sacrebleu) if lane else None
        if meteor_scorer is None:
            meteor_scorer = meteor_scorer_for(tokenizer, use_cache, wordnet)
        timer.mark("load")
        ref_tokens, out_tokens = caption_tokens(tokenizer, references, outputs)
        timer.mark("tokenize")
        metrics: dict[str, float] = bleu_of_tokens(ref_tokens, out_tokens)
        timer.mark("bleu")
        if per_row:  # the same mean as corpus_mean, keeping each row's score
            meteor_rows = [meteor_scorer.score(r, h) for r, h in zip(ref_tokens, out_tokens)]
            metrics["meteor"] = float(np.mean(meteor_rows))
        else:
            metrics["meteor"] = meteor_scorer.corpus_mean(ref_tokens, out_tokens)
        timer.mark("meteor")
        rouge_metrics, sacre_sig = side.result() if side else _rouge_and_sacrebleu(references, outputs, sacrebleu)
        metrics.update(rouge_metrics)
        timer.mark("rouge_sacrebleu")
    finally:
        if lane is not None:
            lane.shutdown(wait=False)
    signature = build_signature(
        "mol2text",
        "strict" if strict else "molt5",
        text_tokenizer=tokenizer.name,
        vocab_sha256=tokenizer.vocab_sha256,
        wordnet=wordnet.version,
        sacrebleu_signature=sacre_sig,
    )
    metrics = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    result = EvalResult("mol2text", len(references), metrics, signature, timings=timer.phases)
    if per_row:
        from evaluation.rows import mol2text_rows

        result.rows = mol2text_rows(ref_tokens, out_tokens, meteor_rows)
    return result
