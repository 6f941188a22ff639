"""Each metric of ``t2m eval`` on its own: score row-aligned outputs against references, in this process.

A number from here is the number ``t2m eval`` reports for the same strings (MolT5 mode; ``strict=True``
as ``--strict``): :func:`evaluation.mol2text.evaluate_mol2text` and
:func:`evaluation.text2mol.evaluate_text2mol` are built on these functions and add only the orchestration
-- worker processes, the reference-side cache, timings, the signature and per-row statistics. In-process
callers (the trainer's quick dev evaluation, ``t2m tune``) score with these directly.

mol2text (captions; an output starting with ``"[CLS] "`` loses it first, as MolT5 does):

- :func:`caption_bleu`: ``{"bleu2", "bleu4"}``, nltk corpus BLEU over SciBERT WordPiece tokens;
- :func:`caption_meteor`: mean nltk METEOR over the same tokens, with WordNet 3.0;
- :func:`caption_rouge`: ``{"rouge1", "rouge2", "rougeL"}``, mean rouge-score F-measures on the strings;
- :func:`caption_sacrebleu`: sacrebleu's corpus BLEU (13a tokens, 0-100) and its signature.

text2mol (SMILES):

- :func:`smiles_bleu`: nltk corpus BLEU-4 over characters;
- :func:`smiles_levenshtein`: mean edit distance of the raw strings;
- :func:`molecule_scores`: ``{"exact_match", "validity", "maccs_fts", "rdk_fts", "morgan_fts"}`` from one
  RDKit pass over the rows (:mod:`evaluation.molecules`; MolT5's quirks and ``strict``: see
  :mod:`evaluation.text2mol`);
- :func:`smiles_sacrebleu`: sacrebleu's corpus BLEU over characters (0-100) and its signature;
- FCD: :func:`evaluation.fcd_metric.fcd_score`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from evaluation.bleu import NgramStats, bleu_from_stats, ngram_stats

CLS_PREFIX = "[CLS] "
BLEU2_WEIGHTS = (0.5, 0.5)
BLEU4_WEIGHTS = (0.25, 0.25, 0.25, 0.25)


def check_rows(references: Sequence[str], outputs: Sequence[str]) -> None:
    """Refuse lists of different lengths, or no rows at all."""
    if len(references) != len(outputs):
        raise ValueError(f"{len(references)} references but {len(outputs)} outputs")
    if not references:
        raise ValueError("nothing to score: no rows")


# ------------------------------------------------------------------------------------ mol2text


def strip_cls(output: str) -> str:
    """MolT5: ``line['output'][6:] if line['output'].startswith('[CLS] ') else line['output']``."""
    return output[len(CLS_PREFIX) :] if output.startswith(CLS_PREFIX) else output


def text_tokenizer(tokenizer=None):
    """``tokenizer`` if it is a :class:`~evaluation.text_tokenizer.TextTokenizer`, else the one loaded from it
    (a directory or id; None: the default SciBERT location; raises TokenizerNotFoundError if absent)."""
    from evaluation.text_tokenizer import TextTokenizer

    return tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer.load(tokenizer)


def caption_tokens(tokenizer, references: Sequence[str], outputs: Sequence[str]
                   ) -> tuple[list[list[str]], list[list[str]]]:
    """The tokens BLEU and METEOR count: (per reference, per output with ``[CLS] `` stripped), from the
    loaded ``tokenizer`` (:func:`text_tokenizer`) in one batch."""
    references, outputs = list(references), [strip_cls(o) for o in outputs]
    check_rows(references, outputs)
    tokens = tokenizer.tokenize_batch(references + outputs)
    return tokens[: len(references)], tokens[len(references) :]


def bleu_of_tokens(reference_tokens: Sequence[Sequence[str]], output_tokens: Sequence[Sequence[str]]
                   ) -> dict[str, float]:
    """``{"bleu2", "bleu4"}``: corpus BLEU of token lists (one reference per row), from one count."""
    stats = ngram_stats(reference_tokens, output_tokens, 4)
    return {"bleu2": float(bleu_from_stats(stats, BLEU2_WEIGHTS)),
            "bleu4": float(bleu_from_stats(stats, BLEU4_WEIGHTS))}


def caption_bleu(references: Sequence[str], outputs: Sequence[str], tokenizer=None) -> dict[str, float]:
    """``{"bleu2", "bleu4"}`` of captions, as ``t2m eval`` scores mol2text (``tokenizer``: see
    :func:`text_tokenizer`)."""
    return bleu_of_tokens(*caption_tokens(text_tokenizer(tokenizer), references, outputs))


def meteor_scorer_for(tokenizer, use_cache: bool = True, wordnet=None):
    """The :class:`~evaluation.meteor.MeteorScorer` for ``tokenizer``'s vocabulary over WordNet 3.0
    (``wordnet``: its location; None: the one ``t2m setup`` installs, else WordNetMissingError)."""
    from evaluation.meteor import MeteorScorer
    from evaluation.wordnet import require_wordnet

    return MeteorScorer.for_vocabulary(tokenizer.vocabulary, tokenizer.vocab_sha256,
                                       wordnet if wordnet is not None else require_wordnet(), use_cache)


def caption_meteor(references: Sequence[str], outputs: Sequence[str], tokenizer=None, meteor_scorer=None,
                   use_cache: bool = True) -> float:
    """Mean METEOR of captions, as ``t2m eval`` scores mol2text."""
    tokenizer = text_tokenizer(tokenizer)
    scorer = meteor_scorer if meteor_scorer is not None else meteor_scorer_for(tokenizer, use_cache)
    return scorer.corpus_mean(*caption_tokens(tokenizer, references, outputs))


def caption_rouge(references: Sequence[str], outputs: Sequence[str]) -> dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL"}``: mean F-measures, called as MolT5 does (``score(output, reference)``)."""
    from evaluation.rouge import rouge_scores

    outputs = [strip_cls(o) for o in outputs]
    check_rows(references, outputs)
    return rouge_scores(references, outputs)


def caption_sacrebleu(references: Sequence[str], outputs: Sequence[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU (default settings, 0-100) of captions, and its signature string."""
    from sacrebleu.metrics import BLEU

    outputs = [strip_cls(o) for o in outputs]
    check_rows(references, outputs)
    bleu = BLEU()
    return float(bleu.corpus_score(outputs, [list(references)]).score), str(bleu.get_signature())


# ------------------------------------------------------------------------------------ text2mol


def smiles_bleu(references: Sequence[str], outputs: Sequence[str], stats: NgramStats | None = None) -> float:
    """MolT5's text2mol BLEU: corpus BLEU-4 over the characters of the SMILES. ``stats``: the
    :func:`evaluation.bleu.ngram_stats` of the same strings, when already counted."""
    check_rows(references, outputs)
    return float(bleu_from_stats(stats if stats is not None else ngram_stats(references, outputs)))


def smiles_levenshtein(references: Sequence[str], outputs: Sequence[str]) -> float:
    """Mean Levenshtein distance between raw strings (MolT5: ``np.mean(lev(out, gt))``)."""
    import numpy as np
    from Levenshtein import distance

    check_rows(references, outputs)
    return float(np.mean([distance(out, ref) for ref, out in zip(references, outputs)]))


_WHITESPACE = re.compile(r"\s")  # (str patterns: exactly the characters of str.isspace; checked for all)


def smiles_sacrebleu(references: Sequence[str], outputs: Sequence[str], stats: NgramStats | None = None
                     ) -> tuple[float, str]:
    """sacrebleu corpus BLEU over characters (0-100) and its signature string.

    With ``stats`` (:func:`evaluation.bleu.ngram_stats` of the same strings, characters as tokens) and no
    whitespace in any string, sacrebleu scores those counts (``BLEU.compute_bleu``) instead of counting
    again: its char tokenizer drops whitespace, and otherwise its n-gram matches and totals are these."""
    from sacrebleu.metrics import BLEU

    check_rows(references, outputs)
    bleu = BLEU(tokenize="char")
    if stats is not None and stats.hyp_ngrams and not any(map(_WHITESPACE.search, (*references, *outputs))):
        score = bleu.compute_bleu(list(stats.numerators), list(stats.hyp_ngrams), stats.hyp_length,
                                  stats.ref_length, smooth_method=bleu.smooth_method, smooth_value=bleu.smooth_value,
                                  effective_order=bleu.effective_order, max_ngram_order=bleu.max_ngram_order)
        bleu.num_refs = 1  # what corpus_score records for one reference per row (the signature's nrefs)
        return float(score.score), str(bleu.get_signature())
    return float(bleu.corpus_score(list(outputs), [list(references)]).score), str(bleu.get_signature())


def _mean(values: list[float]) -> float:
    import numpy as np

    return float(np.mean(values)) if values else float("nan")


def molecule_metrics(rows: Sequence, strict: bool = False) -> tuple[dict[str, float], list[str]]:
    """``{"exact_match", "validity", "maccs_fts", "rdk_fts", "morgan_fts"}`` from each row's
    :class:`evaluation.molecules.RowScore`, counted in MolT5 or ``strict`` mode (see :mod:`evaluation.text2mol`),
    and the notes to show beside them."""
    n = len(rows)
    notes: list[str] = []
    bad_refs = sum(not r.reference_parsed for r in rows)
    if bad_refs:
        notes.append(
            f"{bad_refs} reference SMILES do not parse: invalid rows for validity; left out of the similarity "
            "averages in molt5 mode (MolT5's fingerprint script would crash on them), 0 in strict mode"
        )
    metrics: dict[str, float] = {}
    if strict:
        valid = [r.output_parsed and r.output_atoms > 0 for r in rows]
        metrics["exact_match"] = sum(r.inchi_equal and r.inchi_nonempty and v for r, v in zip(rows, valid)) / n
        metrics["validity"] = sum(valid) / n
        sims = [r.similarities if (v and r.similarities) else (0.0, 0.0, 0.0) for r, v in zip(rows, valid)]
    else:
        metrics["exact_match"] = sum(r.inchi_equal for r in rows) / n
        metrics["validity"] = 1 - sum(r.inchi_failed for r in rows) / n
        sims = [r.similarities for r in rows if r.output_parsed and r.similarities is not None]
    metrics["maccs_fts"] = _mean([s[0] for s in sims])
    metrics["rdk_fts"] = _mean([s[1] for s in sims])
    metrics["morgan_fts"] = _mean([s[2] for s in sims])
    return metrics, notes


def molecule_scores(references: Sequence[str], outputs: Sequence[str], strict: bool = False) -> dict[str, float]:
    """``{"exact_match", "validity", "maccs_fts", "rdk_fts", "morgan_fts"}`` of SMILES outputs, as ``t2m eval``
    scores text2mol (each SMILES parsed once, in this process; a similarity is NaN when no output parses)."""
    from evaluation.molecules import score_rows

    references, outputs = list(references), list(outputs)
    check_rows(references, outputs)
    rows, _ = score_rows(references, outputs, [None] * len(references))
    return molecule_metrics(rows, strict)[0]
