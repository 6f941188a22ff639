"""``t2m tune``: a thin wrapper over :func:`t2m.knn.tune.tune` (choose kNN λ, k, T and the retrieval scope on
the dev slice, and write them into the store).

    t2m tune --store DIR --model DIR [--data DIR] [--knn-lambdas 0.1,0.2,...] [--ks 4,8,16,32]
             [--temperatures 1,10,100] [--pairs 0,4] [--num-beams 1] [--finalists 4]

The options are checked before the model loads (:func:`check_options`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from datastore.params import KNNParams
from t2m.cli.checks import UsageError, check_chebi20, parse_list, usage_errors
from t2m.errors import check_each, check_range
from t2m.model.checkpoint import CHECKPOINT_FIX, checkpoint_dir
from t2m.options import open_store
from t2m.knn.tune import DEFAULT_KS, DEFAULT_LAMBDAS, tune


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="datastore folder (its task and data setting are used)")
    parser.add_argument("--model", required=True, help="the checkpoint the store was built from")
    parser.add_argument("--data", default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--knn-lambdas", default=",".join(map(str, DEFAULT_LAMBDAS)),
                        help="comma-separated kNN weights lambda to try, each in [0, 1]")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="comma-separated neighbour counts k to try")
    parser.add_argument("--temperatures", default=None,
                        help="comma list (default: median nearest squared distance x 0.1,0.3,1,3,10)")
    parser.add_argument("--pairs", default="0",
                        help="retrieval scopes, comma list: 0 = the whole store, N = each input's N nearest training "
                             "pairs (default: %(default)s)")
    parser.add_argument("--finalists", type=int, default=4,
                        help="grid points decoded in stage 2 (at least the likeliest of each retrieval scope)")
    parser.add_argument("--num-beams", type=int, default=1, help="beams when decoding the dev rows (1: greedy search)")
    parser.add_argument("--batch-size", type=int, default=32, help="dev rows per batch")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens generated per dev row")
    parser.add_argument("--dev-rows", type=int, default=None, help="use only the first N dev rows")
    parser.add_argument("--exact", action="store_true", help="exact search instead of the store's index")
    parser.add_argument("--dry-run", action="store_true", help="do not write the choice into the store")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled (.bin) weights; only for checkpoints you trust")


def grid(args: argparse.Namespace) -> dict[str, list | None]:
    """The grid's lists (``lambdas``, ``ks``, ``temperatures``, ``pairs``) read from their flags."""
    return {"lambdas": parse_list("--knn-lambdas", args.knn_lambdas, float), "ks": parse_list("--ks", args.ks, int),
            "temperatures": parse_list("--temperatures", args.temperatures, float),
            "pairs": parse_list("--pairs", args.pairs, int)}


def check_options(args: argparse.Namespace) -> dict[str, list | None]:
    """Refuse, before the model loads, a grid, decoding option, checkpoint, store or ChEBI-20 folder tuning
    cannot use (UsageError, exit 2); the grid's lists."""
    lists = grid(args)
    with usage_errors(args):
        check_each("knn_lambdas", lists["lambdas"], 0, 1, rule="must be in [0, 1] (0: the model alone)")
        check_each("ks", lists["ks"], 1, rule="must be 1 or more")
        check_each("temperatures", lists["temperatures"] or [], 0, low_open=True, rule="must be > 0", empty=True)
        check_each("pairs", lists["pairs"], 0, rule="must be 0 or more (0: the whole store)")
        for name, rule in (("finalists", "must be 1 or more"), ("num_beams", "must be 1 or more (1: greedy search)"),
                           ("batch_size", "must be 1 or more"), ("max_new_tokens", "must be 1 or more"),
                           ("dev_rows", "must be 1 or more (leave it out for every dev row)")):
            check_range(name, getattr(args, name), 1, rule=rule)
        checkpoint_dir(args.model, args.allow_pickle, fix=CHECKPOINT_FIX)
        store = open_store(args.store)
    meta = store.path / "datastore.json"
    if not args.dry_run and not (os.access(meta, os.W_OK) and os.access(store.path, os.W_OK)):
        raise UsageError(f"--store {store.path}: {meta} is not writable, and tune writes its choice there; make it "
                         "writable, or pass --dry-run")
    check_chebi20(args.data)
    return lists


def run(args: argparse.Namespace) -> int:
    lists = check_options(args)
    result = tune(args.store, args.model, args.data, **lists, finalists=args.finalists, num_beams=args.num_beams,
                  batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, dev_rows=args.dev_rows,
                  exact=args.exact, write=not args.dry_run, allow_pickle=args.allow_pickle)
    print(f"{'finalist':<34} {result.metric_name}")
    for row in result.finalists:
        name = KNNParams(row["k"], row["lambda_"], row["temperature"], row.get("pairs", 0)).describe()
        values = ", ".join(f"{k}={row[k]:.4f}" for k in ("bleu4", "morgan_fts_all_rows", "exact_match", "morgan_fts")
                           if k in row)
        print(f"{name:<34} {values}  (dev log-lik {row['dev_log_likelihood']})")
    c = result.chosen
    where = "not written (--dry-run)" if args.dry_run else f"written to {Path(args.store) / 'datastore.json'}"
    print(f"chosen: {c.describe()} -> {result.chosen_metric} "
          f"(model alone: {result.model_only_metric}); {where} in {result.seconds} s")
    return 0
