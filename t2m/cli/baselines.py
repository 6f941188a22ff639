"""``t2m baselines``: a thin wrapper over :func:`t2m.neighbours.baselines.run_chebi20` (the retrieval baselines with no
model, on the ChEBI-20 test split, written in MolT5's 3-column format for ``t2m eval``).

    t2m baselines --out DIR [--data DIR] [--setting auto|benchmark|official] [--database train|first-3001]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.data import SETTINGS
from t2m.neighbours.baselines import run_chebi20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for the two predictions files")
    parser.add_argument("--data", type=Path, help="ChEBI-20 directory (default: found as t2m data info does)")
    parser.add_argument("--setting", default="auto", choices=SETTINGS,
                        help="ChEBI-20 split setting: official (train.txt), benchmark (validation minus the dev "
                             "slice), auto (official when train.txt is present)")
    parser.add_argument("--database", default="train", choices=("train", "first-3001"),
                        help="the pairs searched: the setting's train split, or the first 3,001 validation rows")


def run(args: argparse.Namespace) -> int:
    for task, path in run_chebi20(args.out, args.data, args.setting, args.database).items():
        print(f"{task}: {path}")
    return 0
