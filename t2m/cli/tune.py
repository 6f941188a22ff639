"""``t2m tune``: a thin wrapper over :func:`t2m.tune.tune` (choose kNN λ, k, T and the retrieval scope on
the dev slice, and write them into the store).

    t2m tune --store DIR --model DIR [--data DIR] [--lambdas 0.1,0.2,...] [--ks 4,8,16,32]
             [--temperatures 1,10,100] [--pairs 0,4] [--num-beams 1] [--finalists 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.tune import DEFAULT_KS, DEFAULT_LAMBDAS, Candidate, describe, tune


# -------------------------------------------------------------------------------------------- CLI


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="datastore folder (its task and data setting are used)")
    parser.add_argument("--model", required=True, help="the checkpoint the store was built from")
    parser.add_argument("--data", default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--lambdas", default=",".join(map(str, DEFAULT_LAMBDAS)),
                        help="comma-separated kNN weights lambda to try")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="comma-separated neighbour counts k to try")
    parser.add_argument("--temperatures", default=None,
                        help="comma list (default: median nearest squared distance x 0.1,0.3,1,3,10)")
    parser.add_argument("--pairs", default="0",
                        help="retrieval scopes, comma list: 0 = the whole store, N = each input's N nearest training "
                             "pairs (default: %(default)s)")
    parser.add_argument("--finalists", type=int, default=4, help="grid points decoded in stage 2")
    parser.add_argument("--num-beams", type=int, default=1, help="beams when decoding the dev rows (1: greedy search)")
    parser.add_argument("--batch-size", type=int, default=32, help="dev rows per batch")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens generated per dev row")
    parser.add_argument("--dev-rows", type=int, default=None, help="use only the first N dev rows")
    parser.add_argument("--exact", action="store_true", help="exact search instead of the store's index")
    parser.add_argument("--dry-run", action="store_true", help="do not write the choice into the store")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled (.bin) weights; only for checkpoints you trust")


def run(args: argparse.Namespace) -> int:
    result = tune(args.store, args.model, args.data, lambdas=_floats(args.lambdas),
                  ks=[int(k) for k in _floats(args.ks)],
                  temperatures=_floats(args.temperatures) if args.temperatures else None,
                  pairs=[int(p) for p in _floats(args.pairs)], finalists=args.finalists, num_beams=args.num_beams, batch_size=args.batch_size,
                  max_new_tokens=args.max_new_tokens, dev_rows=args.dev_rows, exact=args.exact,
                  write=not args.dry_run, allow_pickle=args.allow_pickle)
    print(f"{'finalist':<34} {result.metric_name}")
    for row in result.finalists:
        name = describe(Candidate(row["k"], row["lambda_"], row["temperature"], row.get("pairs", 0)))
        values = ", ".join(f"{k}={row[k]:.4f}" for k in ("bleu4", "morgan_fts_all_rows", "exact_match", "morgan_fts")
                           if k in row)
        print(f"{name:<34} {values}  (dev log-lik {row['dev_log_likelihood']})")
    c = result.chosen
    where = "not written (--dry-run)" if args.dry_run else f"written to {Path(args.store) / 'datastore.json'}"
    print(f"chosen: {describe(c)} -> {result.chosen_metric} "
          f"(model alone: {result.model_only_metric}); {where} in {result.seconds} s")
    return 0
