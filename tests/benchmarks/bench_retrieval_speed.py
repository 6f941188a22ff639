"""Speed and memory of the retrieval system (what ``t2m translate --system retrieval`` runs) against the
size of the database: the shipped memory, or a pairs file, optionally repeated to reach a user's size.

    python tests/benchmarks/bench_retrieval_speed.py [--database FILE] [--copies N] [--rows 300]
        [--data ../shared/data] [--json OUT.json]

``--copies N`` searches N copies of the database (each copy's CIDs made unique; molecules and descriptions
repeated), a stand-in for a user's database N times the size: the work per lookup is the same as for
distinct pairs (every pair is scored). Per task, on the first ``--rows`` test inputs, one call of
:meth:`t2m.decoding.translator.Translator.retrieve` (the learned ranker among the 8 nearest, as ``t2m translate``)
and of the nearest pair alone, timed after the search structures are built. Prints JSON: database rows,
load and build seconds, translations per second with and without the ranker, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=Path, help="pairs file (default: the shipped model's memory)")
    parser.add_argument("--copies", type=int, default=1, help="search this many copies of the database")
    parser.add_argument("--rows", type=int, default=300, help="test inputs translated per task")
    parser.add_argument("--data", default=os.environ.get("T2M_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from t2m.data import load_chebi20_records, read_records
    from t2m.decoding.translator import Translator
    from t2m.process_memory import peak_rss_mb
    from t2m.model.checkpoint import default_model_dir, read_checkpoint_info
    from t2m.neighbours.ranker import load_rankers
    from t2m.neighbours.database import NeighbourDatabase, NeighbourFormat
    from t2m.tasks import MOL2TEXT, TEXT2MOL, source_and_target

    test = load_chebi20_records(args.data).test[: args.rows]
    started = time.perf_counter()
    info = read_checkpoint_info(default_model_dir())
    fmt = NeighbourFormat.from_meta(info.extra)
    records = read_records(args.database or fmt.database_path(info.path))
    records = [{**r, "cid": f"{r['cid']}#{copy}"} for copy in range(args.copies) for r in records]
    database = NeighbourDatabase.from_records(records, str(args.database or fmt.database))
    database.use_rankers(load_rankers(fmt.ranker_path(info.path)))
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    database.prepare()
    build_s = time.perf_counter() - started
    translator = Translator.for_retrieval(database=database)
    results = {"cpu": platform.processor() or platform.machine(), "database_rows": len(database),
               "copies": args.copies, "load_seconds": round(load_s, 2), "build_seconds": round(build_s, 2),
               "rows": len(test), "tasks": {}}
    for task in (MOL2TEXT, TEXT2MOL):
        sources = [source_and_target(r["smiles"], r["description"], task)[0] for r in test]
        started = time.perf_counter()
        translator.retrieve(sources, task)
        ranked_s = time.perf_counter() - started
        started = time.perf_counter()
        database._nearest(sources, task, 1, None, None)
        nearest_s = time.perf_counter() - started
        results["tasks"][task] = {"ranked_per_s": round(len(sources) / ranked_s, 1),
                                  "nearest_per_s": round(len(sources) / nearest_s, 1)}
    results["peak_rss_mb"] = peak_rss_mb()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
