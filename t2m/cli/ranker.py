"""``t2m ranker``: a thin wrapper over :func:`t2m.neighbour_ranker.fit_rankers` (fit the learned choice among
each input's nearest database pairs, one ranker per task, on the database itself).

    t2m ranker --database PAIRS.tsv --out ranker.json [--task mol2text --task text2mol] [--pool 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.neighbour_ranker import POOL
from t2m.tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", type=Path, required=True,
                        help="pairs to rank and fit on: ChEBI-20-format TSV (CID, SMILES, description) or JSONL")
    parser.add_argument("--out", type=Path, required=True, help="ranker JSON to write")
    parser.add_argument("--task", action="append", choices=TASKS, dest="tasks",
                        help="a direction to fit (repeat for both; default: both)")
    parser.add_argument("--pool", type=int, default=POOL, help="nearest pairs ranked per input")


def run(args: argparse.Namespace) -> int:
    from t2m.inputs import UsageError
    from t2m.neighbour_ranker import fit_rankers
    from t2m.neighbours import NeighbourDatabase

    if args.pool < 2:
        raise UsageError(f"--pool {args.pool}: a ranker chooses among at least 2 pairs; pass --pool 2 or more")
    rankers = fit_rankers(NeighbourDatabase.from_file(args.database), args.out, args.tasks or TASKS, args.pool)
    for task, ranker in rankers.items():
        print(f"{task}: fitted on {ranker.fitted_on['queries']} queries of {ranker.fitted_on['pairs']} pairs")
    print(f"wrote {args.out}")
    return 0
