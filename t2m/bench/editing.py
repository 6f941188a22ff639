"""The bench's editing measures (:mod:`t2m.editing`) for every system of a task: against the training pair
the ranked retrieval answers with -- the pair a T5 that reads its neighbour is shown, when its memory is
the setting's train split -- how much each output copies, whether it changes what the truth changes, and
exact match by how near that pair's molecule is to the test molecule."""

from __future__ import annotations

from typing import Any

import numpy as np

from t2m.editing import edit_agreement, molecule_similarities, similarity_bands
from t2m.neighbours.database import Neighbour, copied_share
from t2m.tasks import TEXT2MOL, source_and_target


def editing_part(task: str, runs: dict[str, Any], rows: dict[str, Any], test: list[dict], train: list[dict],
                 references: list[str]) -> dict[str, Any] | None:
    """bench.json's "editing" part of a task; None without a retrieval run to take the neighbours from."""
    shown = runs.get("retrieval+ranker") or runs.get("retrieval")
    if shown is None or not shown.neighbours:
        return None
    pairs = [train[row] for row in shown.neighbours]
    targets = [source_and_target(p["smiles"], p["description"], task)[1] for p in pairs]
    similarities = molecule_similarities([r["smiles"] for r in test[: len(pairs)]], [p["smiles"] for p in pairs])
    bands = similarity_bands(similarities)
    neighbours = [[Neighbour(row, 0.0, "", target)] for row, target in zip(shown.neighbours, targets)]
    systems = {}
    for name, run in runs.items():
        if len(run.outputs) != len(targets):  # the datastore-size runs cover fewer rows
            continue
        if task == TEXT2MOL:
            exact = np.asarray(rows[name].values["exact"], dtype=bool)
        else:
            exact = np.array([o.strip() == r.strip() for o, r in zip(run.outputs, references)])
        systems[name] = {**edit_agreement(run.outputs, references, targets, task),
                         "copied_share": round(copied_share(run.outputs, neighbours, task), 4),
                         "exact_by_band": {band: round(float(exact[mask].mean()), 4) if mask.any() else None
                                           for band, mask in bands.items()}}
    return {"neighbour": shown.name, "rows_by_band": {band: int(mask.sum()) for band, mask in bands.items()},
            "reference_copied_share": round(copied_share(references, neighbours, task), 4), "systems": systems}
