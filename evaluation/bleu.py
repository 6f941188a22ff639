"""Corpus BLEU exactly as ``nltk.translate.bleu_score.corpus_bleu`` computes it (one reference per row).

Re-implemented so that scoring does not import nltk (1 s of scipy/sklearn imports); the tests check that
the numbers are bit-identical to nltk's on real data. Conventions kept from nltk (default smoothing
``method0``, no auto re-weighting):

- per row and order n, the clipped n-gram matches are added to the numerator and ``max(1, #n-grams of
  the hypothesis)`` to the denominator (so an empty hypothesis still adds 1);
- if no unigram matches at all, the score is 0;
- an order whose corpus-wide numerator is 0 contributes ``log(sys.float_info.min)`` (score ~ 0), with a
  warning, as nltk does;
- brevity penalty ``exp(1 - r/c)`` when the total hypothesis length c is not longer than the reference
  length r.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NgramStats:
    """Corpus totals that BLEU is computed from."""

    numerators: tuple[int, ...]  # clipped matches per order 1..max_n
    denominators: tuple[int, ...]  # sum over rows of max(1, #hypothesis n-grams) per order
    hyp_length: int
    ref_length: int
    hyp_ngrams: tuple[int, ...] = ()  # sum over rows of #hypothesis n-grams per order (sacrebleu's "total")


def _ngram_counts(seq: Sequence, n: int) -> Counter:
    # n-gram identity as in nltk: substrings for str (characters as tokens), tuples (tokens for n=1) for lists
    if isinstance(seq, str):
        return Counter(seq) if n == 1 else Counter([seq[i : i + n] for i in range(len(seq) - n + 1)])
    if n == 1:
        return Counter(seq)
    return Counter(zip(*(seq[i:] for i in range(n))))


def ngram_stats(references: Sequence[Sequence], hypotheses: Sequence[Sequence], max_n: int = 4) -> NgramStats:
    """Corpus n-gram statistics; each reference/hypothesis is a token list, or a str meaning its characters."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    nums = [0] * max_n
    dens = [0] * max_n
    grams = [0] * max_n
    hyp_len = ref_len = 0
    for ref, hyp in zip(references, hypotheses):
        same = ref == hyp  # (a third of MolT5's text2mol outputs) every n-gram of the hypothesis matches
        for n in range(1, max_n + 1):
            if len(hyp) >= n:
                if same:
                    clipped = len(hyp) - n + 1
                else:
                    ref_count = _ngram_counts(ref, n).get if len(ref) >= n else {}.get
                    clipped = 0
                    for gram, c in _ngram_counts(hyp, n).items():  # clipped count: min(hyp count, ref count)
                        r = ref_count(gram)
                        if r:
                            clipped += c if c < r else r
                nums[n - 1] += clipped
                dens[n - 1] += len(hyp) - n + 1
                grams[n - 1] += len(hyp) - n + 1
            else:
                dens[n - 1] += 1  # nltk: max(1, 0 n-grams)
        hyp_len += len(hyp)
        ref_len += len(ref)
    return NgramStats(tuple(nums), tuple(dens), hyp_len, ref_len, tuple(grams))


def bleu_from_stats(stats: NgramStats, weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25)) -> float:
    """BLEU from corpus statistics with nltk's float operations (so the result is bit-identical)."""
    if len(weights) > len(stats.numerators):
        raise ValueError(f"{len(weights)} weights but statistics only up to order {len(stats.numerators)}")
    if stats.numerators[0] == 0:
        return 0
    c, r = stats.hyp_length, stats.ref_length
    if c > r:
        bp = 1
    elif c == 0:
        bp = 0
    else:
        bp = math.exp(1 - r / c)
    p_n: list[float] = []
    for i in range(len(weights)):
        num, den = stats.numerators[i], stats.denominators[i]
        if num != 0:
            p_n.append(num / den)  # == float(nltk's unnormalised Fraction(num, den))
        else:
            warnings.warn(
                f"The hypotheses contain 0 counts of {i + 1}-gram overlaps; BLEU evaluates to ~0 (as in nltk).",
                stacklevel=2,
            )
            p_n.append(sys.float_info.min)
    s = (w_i * math.log(p_i) for w_i, p_i in zip(weights, p_n) if p_i > 0)
    return bp * math.exp(math.fsum(s))


def corpus_bleu(
    references: Sequence[Sequence], hypotheses: Sequence[Sequence], weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25)
) -> float:
    """nltk ``corpus_bleu([[ref] for ref in references], hypotheses, weights)`` (one reference each)."""
    return bleu_from_stats(ngram_stats(references, hypotheses, len(weights)), weights)


def char_bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """BLEU-4 over the characters of each string: MolT5's text2mol BLEU on SMILES."""
    return corpus_bleu(references, hypotheses)
