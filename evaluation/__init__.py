"""Score translations between molecules and text, exactly as MolT5's evaluation code does by default.

Pure functions over lists of strings (references, outputs); nothing here knows about models.

>>> from evaluation import evaluate_text2mol, evaluate_mol2text, read_predictions
>>> result = evaluate_text2mol(["CCO", "c1ccccc1"], ["CCO", "C1CC1"], fcd=False)
>>> result.metrics["exact_match"]
0.5

- :func:`evaluate_text2mol`: ``bleu`` (characters), ``exact_match`` (InChI), ``levenshtein``, ``maccs_fts``,
  ``rdk_fts``, ``morgan_fts``, ``validity``, ``fcd`` and ``sacrebleu`` (character-level, 0-100);
- :func:`evaluate_mol2text`: ``bleu2``, ``bleu4``, ``rouge1``, ``rouge2``, ``rougeL``, ``meteor`` and ``sacrebleu``;
- each metric on its own, in this process, with the number ``t2m eval`` reports (:mod:`evaluation.metrics`,
  on which the two above are built): :func:`caption_bleu`, :func:`caption_meteor`, :func:`caption_rouge`,
  :func:`smiles_bleu`, :func:`smiles_levenshtein`, :func:`molecule_scores` (exact match, validity and the
  fingerprint similarities);
- ``per_row=True`` keeps each row's statistics in the result's ``rows`` (:class:`RowStatistics`): the
  metrics on any resample of the rows, for paired bootstrap intervals;
- ``strict=True`` fixes MolT5's quirks (see :mod:`evaluation.text2mol`); the result's ``signature`` says
  which mode, and every version that can change a number.

Submodules are imported lazily, so ``import evaluation`` is instant.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EvalResult": "evaluation.result",
    "evaluate_text2mol": "evaluation.text2mol",
    "evaluate_mol2text": "evaluation.mol2text",
    "evaluate_file": "evaluation.evaluate",
    "caption_bleu": "evaluation.metrics",
    "caption_meteor": "evaluation.metrics",
    "caption_rouge": "evaluation.metrics",
    "smiles_bleu": "evaluation.metrics",
    "smiles_levenshtein": "evaluation.metrics",
    "molecule_scores": "evaluation.metrics",
    "read_predictions": "evaluation.predictions",
    "Predictions": "evaluation.predictions",
    "RowStatistics": "evaluation.rows",
    "PredictionsFormatError": "evaluation.predictions",
    "corpus_bleu": "evaluation.bleu",
    "char_bleu": "evaluation.bleu",
    "rouge_scores": "evaluation.rouge",
    "MeteorScorer": "evaluation.meteor",
    "TextTokenizer": "evaluation.text_tokenizer",
    "TokenizerNotFoundError": "evaluation.text_tokenizer",
    "WordNetMissingError": "evaluation.wordnet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
