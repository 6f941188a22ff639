"""``t2m ranker``: a thin wrapper over :func:`t2m.neighbours.ranker.fit_rankers` (fit the learned choice among
each input's nearest database pairs, one ranker per task, on the database itself).

    t2m ranker --out ranker.json [--database PAIRS.tsv | --data DIR --setting official] [--task mol2text] [--pool 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.cli.checks import UsageError
from t2m.data import DEV_SIZE, SETTINGS, load_chebi20_records
from t2m.neighbours.database import NeighbourDatabase
from t2m.neighbours.ranker import POOL, fit_rankers
from t2m.tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", type=Path, default=None,
                        help="pairs to rank and fit on: ChEBI-20-format TSV (CID, SMILES, description) or JSONL "
                             "(default: the ChEBI-20 train split of --setting, the official train.txt where present)")
    parser.add_argument("--data", type=Path, default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--dev-size", type=int, default=DEV_SIZE,
                        help="rows of validation.txt held out as the dev slice (default: %(default)s)")
    parser.add_argument("--setting", default="auto", choices=SETTINGS,
                        help="ChEBI-20 setting whose train split is the database without --database (default: auto, "
                             "official when train.txt is present)")
    parser.add_argument("--out", type=Path, required=True, help="ranker JSON to write")
    parser.add_argument("--task", action="append", choices=TASKS, dest="tasks",
                        help="a direction to fit (repeat for both; default: both)")
    parser.add_argument("--pool", type=int, default=POOL, help="nearest pairs ranked per input")


def run(args: argparse.Namespace) -> int:
    if args.pool < 2:
        raise UsageError(f"--pool {args.pool}: a ranker chooses among at least 2 pairs; pass --pool 2 or more")
    if args.database is not None:
        database = NeighbourDatabase.from_file(args.database)
    else:
        splits = load_chebi20_records(args.data, args.setting, dev_size=args.dev_size)
        database = NeighbourDatabase.from_records(splits.train, f"ChEBI-20 {splits.setting} train ({splits.sources['train']})")
        print(f"database: the ChEBI-20 {splits.setting} setting's train split, {len(database)} pairs")
    rankers = fit_rankers(database, args.out, args.tasks or TASKS, args.pool)
    for task, ranker in rankers.items():
        print(f"{task}: fitted on {ranker.fitted_on['queries']} queries of {ranker.fitted_on['pairs']} pairs")
    print(f"wrote {args.out}")
    return 0
