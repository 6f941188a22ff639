"""ROUGE-1/2/L F-measures exactly as ``rouge_score.rouge_scorer.RougeScorer(['rouge1','rouge2','rougeL'])``.

Re-implemented (the tests check bit-identity with rouge-score 0.1.2) because rouge-score imports nltk (1 s)
and computes the LCS with a Python dynamic-programming table; here the LCS length comes from a
bit-parallel algorithm on Python integers, which gives the same length. Default tokenizer of rouge-score,
no stemming: lower-case, every run of characters outside ``[a-z0-9]`` is a separator.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")


def rouge_tokenize(text: str) -> list[str]:
    """rouge-score's DefaultTokenizer(use_stemmer=False).tokenize."""
    return _NON_ALPHANUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (bit-parallel, Crochemore et al. 2001)."""
    if not a or not b:
        return 0
    masks: dict = {}
    for i, x in enumerate(a):
        masks[x] = masks.get(x, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for y in b:
        m = masks.get(y)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _fmeasure(precision: float, recall: float) -> float:
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ngram_f(target: list[str], prediction: list[str], n: int) -> float:
    t = Counter(tuple(target[i : i + n]) for i in range(len(target) - n + 1))
    p = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    overlap = 0
    for g in t:
        overlap += min(t[g], p[g])
    precision = overlap / max(sum(p.values()), 1)
    recall = overlap / max(sum(t.values()), 1)
    return _fmeasure(precision, recall)


def _lcs_f(target: list[str], prediction: list[str]) -> float:
    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction)
    return _fmeasure(lcs / len(prediction), lcs / len(target))


def rouge_f(target: str, prediction: str) -> tuple[float, float, float]:
    """(rouge1, rouge2, rougeL) F-measures of ``RougeScorer.score(target, prediction)``."""
    t, p = rouge_tokenize(target), rouge_tokenize(prediction)
    return _ngram_f(t, p, 1), _ngram_f(t, p, 2), _lcs_f(t, p)


def rouge_scores(references: Sequence[str], outputs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over rows, called as MolT5 does: ``score(output, reference)``."""
    import numpy as np

    if len(references) != len(outputs):
        raise ValueError(f"{len(references)} references but {len(outputs)} outputs")
    rows = [rouge_f(out, ref) for ref, out in zip(references, outputs)]
    if not rows:
        return {"rouge1": float("nan"), "rouge2": float("nan"), "rougeL": float("nan")}
    return {
        "rouge1": float(np.mean([r[0] for r in rows])),
        "rouge2": float(np.mean([r[1] for r in rows])),
        "rougeL": float(np.mean([r[2] for r in rows])),
    }
