"""Published predictions on the ChEBI-20 test split, scored beside the bench's own systems.

MolT5's repository publishes the outputs of T5 and MolT5 (small, base, large; all trained on the official
train split) on every test row (``predictions/{model}-{caption2smiles,smiles2caption}.txt``; a copy lives in
``../shared/data/molt5_predictions``). The bench reads them, puts each row beside the test row with the same
(input, ground truth) -- the files are not in ``test.txt``'s order -- scores them with the same evaluator,
and compares the system ``t2m translate`` runs by default with each of them by paired bootstrap: the
like-for-like comparison with published numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from evaluation import read_predictions
from t2m.bench.systems import SystemRun
from t2m.io import file_sha256
from t2m.tasks import TEXT2MOL

# bench system name -> the file stem in MolT5's predictions folder
PUBLISHED_MODELS = {"T5-small": "t5-v1_1-small", "MolT5-small": "molt5-small", "MolT5-base": "molt5-base",
                    "MolT5-large": "molt5-large"}
PREFIX = "published:"
FOLDER_NAME = "molt5_predictions"


def published_name(model: str) -> str:
    """The bench's system name of a published model's predictions: ``published:MolT5-small``."""
    return PREFIX + model


def is_published(system: str) -> bool:
    return system.startswith(PREFIX)


def prediction_file(folder: Path, model: str, task: str) -> Path:
    direction = "caption2smiles" if task == TEXT2MOL else "smiles2caption"
    return folder / f"{PUBLISHED_MODELS[model]}-{direction}.txt"


def find_published_dir(given: Path | None, data_dir: Path) -> Path | None:
    """``given`` when set (it must exist); else ``molt5_predictions/`` beside the ChEBI-20 folder (as in
    ``../shared/data``) when it is there; else None (the bench runs without published systems)."""
    if given is not None:
        if not Path(given).is_dir():
            raise FileNotFoundError(f"published={given}: folder not found; point it to a copy of MolT5's "
                                    "predictions/ folder, or leave it out")
        return Path(given)
    candidate = Path(data_dir).parent / FOLDER_NAME
    return candidate if candidate.is_dir() else None


def published_runs(task: str, sources: Sequence[str], references: Sequence[str], folder: Path) -> dict[str, SystemRun]:
    """{system name: its run} for every published model whose file in ``folder`` covers all the bench's
    test rows; a file that is missing or lacks a row is reported on stderr and left out."""
    runs = {}
    for model in PUBLISHED_MODELS:
        path = prediction_file(folder, model, task)
        if not path.is_file():
            print(f"bench: {task}: {path} not found; {published_name(model)} left out", file=sys.stderr)
            continue
        predictions = read_predictions(path)
        by_row = {(s, r): o for s, r, o in zip(predictions.inputs, predictions.references, predictions.outputs)}
        outputs = [by_row.get((s, r)) for s, r in zip(sources, references)]
        missing = sum(o is None for o in outputs)
        if missing:
            print(f"bench: {task}: {path} has no prediction for {missing} of {len(outputs)} test rows (matched by "
                  f"input and ground truth); {published_name(model)} left out", file=sys.stderr)
            continue
        settings: dict[str, Any] = {"decoder": "published predictions", "file": path.name,
                                    "sha256": file_sha256(path),
                                    "source": "blender-nlp/MolT5 predictions/ (trained on the official train split)"}
        runs[published_name(model)] = SystemRun(published_name(model), settings, [str(o) for o in outputs], 0.0, 0)
    return runs
