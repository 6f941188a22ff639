"""Retrieval baselines with no model: answer with the nearest training pair's other side.

- mol2text: the caption of the training molecule most similar to the input molecule — Morgan bit vectors
  (radius 2, 2048 bits), Tanimoto similarity (RDKit ``BulkTanimotoSimilarity``). An input SMILES RDKit
  cannot parse (or an empty one) falls back to the training SMILES most similar *as text* (TF-IDF over
  character 1–4-grams, cosine) and is flagged in :attr:`t2m.neighbours.similarity.Nearest.fallback`.
- text2mol: the SMILES of the training pair whose description is most similar to the input — TF-IDF over
  word 1–2-grams with sublinear term frequency (``1 + log tf``; scikit-learn defaults otherwise:
  lower-cased, ``\\b\\w\\w+\\b`` tokens, smoothed idf, l2-normalised rows), cosine similarity. An
  input sharing no term with any training description gets the first training SMILES, flagged.

Ties go to the earliest training row, so results are deterministic. :func:`run_chebi20` writes both
baselines' predictions on ChEBI-20 in MolT5's format (on the command line: ``t2m baselines``)::

    t2m baselines --out DIR [--data DIR] [--setting benchmark] [--database train|first-3001]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from t2m.data import load_chebi20_records, read_tsv_records, resolve_chebi20_dir, write_predictions
from t2m.neighbours.similarity import MoleculeSimilarity, TextSimilarity
from t2m.tasks import MOL2TEXT, TEXT2MOL

__all__ = ["mol2text_baseline", "text2mol_baseline", "run_chebi20"]


def mol2text_baseline(queries: Sequence[str], database_smiles: Sequence[str], database_captions: Sequence[str], **options) -> list[str]:
    """Caption of the most similar database molecule for each query SMILES (see :class:`MoleculeSimilarity`)."""
    return MoleculeSimilarity(database_smiles, database_captions, **options).most_similar(queries).outputs


def text2mol_baseline(queries: Sequence[str], database_descriptions: Sequence[str], database_smiles: Sequence[str], **options) -> list[str]:
    """SMILES of the most similar database description for each query (see :class:`TextSimilarity`)."""
    return TextSimilarity(database_descriptions, database_smiles, **options).most_similar(queries).outputs


def run_chebi20(out_dir: Path, data_dir: Path | None = None, setting: str = "auto", database: str = "train") -> dict[str, Path]:
    """Write ``retrieval-mol2text.txt`` and ``retrieval-text2mol.txt`` (MolT5 format) for the test split.

    ``database="train"`` uses the setting's train split; ``"first-3001"`` the first 3,001 rows of
    ``validation.txt`` (how the reference numbers in issue 5 were computed)."""
    splits = load_chebi20_records(data_dir, setting)
    if database == "train":
        db = splits.train
    elif database == "first-3001":
        db = read_tsv_records(resolve_chebi20_dir(data_dir) / "validation.txt")[:3001]
    else:
        raise ValueError(f"unknown database {database!r}: choose 'train' or 'first-3001'")
    db_smiles, db_text = [r["smiles"] for r in db], [r["description"] for r in db]
    test_smiles, test_text = [r["smiles"] for r in splits.test], [r["description"] for r in splits.test]

    mol = MoleculeSimilarity(db_smiles, db_text).most_similar(test_smiles)
    text = TextSimilarity(db_text, db_smiles).most_similar(test_text)
    paths = {MOL2TEXT: out_dir / "retrieval-mol2text.txt", TEXT2MOL: out_dir / "retrieval-text2mol.txt"}
    write_predictions(paths[MOL2TEXT], MOL2TEXT, test_smiles, test_text, mol.outputs)
    write_predictions(paths[TEXT2MOL], TEXT2MOL, test_text, test_smiles, text.outputs)
    print(f"setting {splits.setting}, database {database} ({len(db)} pairs), test {len(splits.test)} rows; "
          f"fallbacks: mol2text {mol.n_fallback}, text2mol {text.n_fallback}", file=sys.stderr)
    return paths
