"""The learned neighbour ranker against the nearest pair, no model: ChEBI-20 benchmark setting, both tasks.

    python tests/benchmarks/bench_neighbour_ranker.py [--data ../shared/data] [--ranker FILE] [--split test]
        [--json OUT.json]

Database: the benchmark setting's training pairs (validation minus the dev slice + the recovered train
rows, as the shipped model's memory). Rankers: ``--ranker`` (e.g. ``t2m/default_model/ranker.json``), else
fitted here on that database (:func:`t2m.neighbours.ranker.fit_ranker`). Each test input gets the target
of its nearest pair (the retrieval baseline) and of the pair the ranker puts first; both are scored by
the evaluator (as ``t2m eval``) and compared by the bench's paired bootstrap (1,000 resamples, 95%).
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
    parser.add_argument("--data", default=os.environ.get("T2M_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--ranker", type=Path, help="rankers JSON (default: fit them here)")
    parser.add_argument("--split", default="test", choices=("test", "dev"))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from t2m.bench.statistics import evaluate, paired_bootstrap
    from t2m.data import load_chebi20_records
    from t2m.neighbours.ranker import fit_ranker, load_rankers
    from t2m.neighbours.database import NeighbourDatabase
    from t2m.tasks import MOL2TEXT, TEXT2MOL, source_and_target

    splits = load_chebi20_records(args.data, "benchmark")
    rows = splits.test if args.split == "test" else splits.dev
    database = NeighbourDatabase.from_records(splits.train, "benchmark train")
    results = {"cpu": platform.processor() or platform.machine(), "database_rows": len(database),
               "split": args.split, "rows": len(rows), "tasks": {}}
    metrics = {MOL2TEXT: ("bleu2", "bleu4", "meteor"), TEXT2MOL: ("morgan_fts", "maccs_fts", "rdk_fts", "exact_match")}
    for task in (MOL2TEXT, TEXT2MOL):
        started = time.perf_counter()
        ranker = load_rankers(args.ranker)[task] if args.ranker else fit_ranker(database, task)
        fit_s = time.perf_counter() - started
        pairs = [source_and_target(r["smiles"], r["description"], task) for r in rows]
        sources, references = [s for s, _ in pairs], [t for _, t in pairs]
        started = time.perf_counter()
        nearest = [n[0].target for n in database.search(sources, task, 1)]
        nearest_s = time.perf_counter() - started
        ranked_db = NeighbourDatabase.from_records(splits.train, "benchmark train").use_rankers({task: ranker})
        ranked_db.prepare([task])
        started = time.perf_counter()
        ranked = [n[0].target for n in ranked_db.search(sources, task, 1)]
        ranked_s = time.perf_counter() - started
        base, system = (evaluate(task, references, out, fcd=False) for out in (nearest, ranked))
        part = {"fit_seconds": round(fit_s, 1), "changed": sum(a != b for a, b in zip(nearest, ranked)),
                "queries_per_s": {"nearest": round(len(rows) / nearest_s, 1), "ranked": round(len(rows) / ranked_s, 1)},
                "nearest": {m: base.metrics[m] for m in metrics[task]},
                "ranked": {m: system.metrics[m] for m in metrics[task]},
                "difference": {m: paired_bootstrap(system.rows, base.rows, m) for m in metrics[task]},
                "signature": system.signature}
        results["tasks"][task] = part
        print(f"\n{task} ({len(rows)} {args.split} rows, database {len(database)} pairs; ranker changed "
              f"{part['changed']} outputs; {part['queries_per_s']['ranked']} queries/s, nearest "
              f"{part['queries_per_s']['nearest']})")
        print("| metric | nearest pair | ranked | difference [95% interval] |\n|---|---|---|---|")
        for m in metrics[task]:
            d = part["difference"][m]
            print(f"| {m} | {part['nearest'][m]:.4f} | {part['ranked'][m]:.4f} | {d['delta']:+.4f} "
                  f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |")
        print(f"signature: {part['signature']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
