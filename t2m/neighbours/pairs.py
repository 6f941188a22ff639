"""Pair-restricted kNN-MT: for each input, the training pairs whose source is nearest it.

kNN-MT over the whole datastore finds decoder states that look alike, wherever they came from. SK-MT
(Dai et al., "SK-MT: Simple and Scalable Nearest Neighbor Machine Translation", 2023) first retrieves
the few training pairs nearest the input sentence and lets the tokens of those pairs alone vote. Here the
nearness is chemistry's, as in :mod:`t2m.neighbours.baselines`: Morgan-fingerprint Tanimoto between molecules for
mol2text, TF-IDF cosine between descriptions for text2mol. :class:`datastore.RowRestrictedRetriever`
then searches each input's entries exactly.

The store's training pairs are read again from the data its JSON names (checked by sha256), in the row
order its ``rows.npy`` ids refer to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datastore.store import META_FILE
from t2m.data import training_records
from t2m.io import file_sha256
from t2m.neighbours.similarity import MoleculeSimilarity, TextSimilarity
from t2m.tasks import MOL2TEXT, TEXT2MOL, check_task


def store_training_pairs(store: Any) -> list[dict]:
    """The training pairs ``store`` was built from (the rows its ``rows.npy`` ids index), from the files
    its JSON records; a missing or changed file raises naming the file and what to do."""
    data = store.meta.get("data", {})
    files = data.get("files") or []
    where = store.path / META_FILE
    if not files:
        raise ValueError(f'{where}: "data" names no files, so the training pairs behind the store are unknown; '
                         "pair-restricted kNN needs a store built from a ChEBI-20 folder or a pairs file")
    for spec in files:
        path = Path(spec["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{where}: the store was built from {path}, which is not there; put the data "
                                    "back at that path (pair-restricted kNN reads the training pairs again), or "
                                    "search the whole store (pairs=0)")
        if spec.get("sha256") and file_sha256(path) != spec["sha256"]:
            raise ValueError(f"{where}: {path} changed since the store was built (sha256 differs); rebuild the "
                             "store from the current data, or search the whole store (pairs=0)")
    first = Path(files[0]["path"])
    if data.get("dataset") == "chebi20":
        records, _ = training_records(first.parent, data.get("setting", "auto"), data.get("dev_size"))
    else:
        records, _ = training_records(first)
    return records


class PairFinder:
    """The store rows nearest an input, by source similarity (see the module docstring)."""

    def __init__(self, records: Sequence[dict], task: str, rows: Sequence[int] | None = None) -> None:
        """``records``: the store's training pairs; ``rows``: the store row ids that hold entries (a subset
        store keeps some rows only; None: all)."""
        check_task(task)
        self.rows = np.arange(len(records)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        picked = [records[int(r)] for r in self.rows]
        smiles, descriptions = [r["smiles"] for r in picked], [r["description"] for r in picked]
        if task == MOL2TEXT:
            self._retriever = MoleculeSimilarity(smiles, descriptions)
        else:
            self._retriever = TextSimilarity(descriptions, smiles)
        self.task = task

    @classmethod
    def for_store(cls, store: Any) -> "PairFinder":
        task = store.task
        if task not in (TEXT2MOL, MOL2TEXT):
            raise ValueError(f"{store.path}: the store's task is {task!r}; pair-restricted kNN needs a text2mol or "
                             "mol2text store")
        return cls(store_training_pairs(store), task, store.rows)

    def nearest(self, inputs: Sequence[str], pairs: int) -> list[np.ndarray]:
        """For each input, the store row ids of its ``pairs`` nearest training pairs, nearest first."""
        return [self.rows[found] for found in self._retriever.nearest_rows(list(inputs), pairs)]
