"""How near is the nearest training pair, in training and at test time? (issue 29: training and test
neighbours must be alike in distance.)

    python tests/benchmarks/neighbour_distances.py [--data DIR] [--json FILE]

For each task, the similarity of each pair's nearest neighbour in the official train split, as the
neighbour database measures it (mol2text: Morgan r=2 2048-bit Tanimoto of the molecules; text2mol: TF-IDF
cosine of the descriptions):

- train: every training pair, the pair itself and every pair of the same molecule excluded (what
  ``t2m train`` shows a training input with ``neighbours``);
- dev (the setting's dev rows) and test: every row, nothing excluded (what ``t2m translate`` shows).

Prints quantiles and the shares of the similarity bands the bench reports exact match by (≥ 0.999,
0.9–0.999, < 0.9).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BANDS = ((">=0.999", 0.999, 2.0), ("0.9-0.999", 0.9, 0.999), ("<0.9", -1.0, 0.9))


def summary(similarities: list[float]) -> dict:
    s = np.asarray(similarities, dtype=float)
    row = {"rows": len(s), "mean": round(float(s.mean()), 4)}
    row.update({f"q{round(q * 100)}": round(float(np.quantile(s, q)), 4) for q in (0.1, 0.25, 0.5, 0.75, 0.9)})
    row.update({name: round(float(((s >= lo) & (s < hi)).mean()), 4) for name, lo, hi in BANDS})
    return row


def main() -> None:
    from t2m.data import load_chebi20_records
    from t2m.neighbours.database import NeighbourDatabase

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    splits = load_chebi20_records(args.data, "official")
    database = NeighbourDatabase.from_records(splits.train, "train")
    results = {}
    for task, side in (("mol2text", "smiles"), ("text2mol", "description")):
        started = time.perf_counter()
        train = database.search([r[side] for r in splits.train], task, 1,
                                exclude_same_molecule_as=[r["smiles"] for r in splits.train])
        rows = {"train (itself and its molecule excluded)": [n[0].similarity for n in train if n]}
        for name, records in (("dev", splits.dev), ("test", splits.test)):
            rows[name] = [n[0].similarity for n in database.search([r[side] for r in records], task, 1)]
        for name, sims in rows.items():
            results[f"{task}: {name}"] = summary(sims)
            print(f"{task:9s} {name:42s} {json.dumps(results[f'{task}: {name}'])}", flush=True)
        print(f"{task}: {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
