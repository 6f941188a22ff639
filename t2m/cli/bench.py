"""``t2m bench``: a thin wrapper over :func:`t2m.bench.run_bench` (see :mod:`t2m.bench` for what it measures).

    t2m bench [--model DIR] [--data DIR] [--out DIR] [--tasks text2mol,mol2text] [--beams 1,5]
              [--limit N] [--dev-limit N] [--fractions 0.25,0.5,1.0] [--store-dir DIR] [--no-fcd]
              [--bootstrap 1000] [--no-knn] [--knn-lambdas 0,0.1,...] [--jobs N] [--published DIR | --no-published]

The options are checked before the model loads (:func:`check_options`): their ranges by
:class:`t2m.bench.config.BenchConfig`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.bench.config import BenchConfig, SWEEP_LAMBDAS
from t2m.bench.run import run_bench
from t2m.cli.checks import UsageError, check_chebi20, check_existing, parse_list, usage_errors
from t2m.data import SETTINGS
from t2m.io import check_writable_folder
from t2m.model.checkpoint import checkpoint_dir

# the fields of BenchConfig the parser stores under other names (t2m.cli.checks.flag_names)
FIELD_FLAGS = {"fcd=False": "--no-fcd", "isolate_builds=False": "--in-process", "knn=False": "--no-knn",
               "progress=False": "--no-progress", "compare_published=False": "--no-published"}


def _list(args: argparse.Namespace, name: str, kind: type) -> tuple:
    return tuple(parse_list(args.flag_names[name], getattr(args, name), kind))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--setting", default="auto", choices=SETTINGS,
                        help="ChEBI-20 split setting: official (train.txt), benchmark (validation minus the dev "
                             "slice), auto (official when train.txt is present)")
    parser.add_argument("--dev-size", type=int, default=None, help="rows in the dev slice (benchmark setting; default 300)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default: %(default)s)")
    parser.add_argument("--tasks", default="text2mol,mol2text", help="comma list (default: %(default)s)")
    parser.add_argument("--beams", default="1,5", help="beam sizes; the largest is the headline (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N test rows")
    parser.add_argument("--dev-limit", type=int, default=None, help="use the first N dev rows for tuning and the λ sweep")
    parser.add_argument("--fractions", default="0.25,0.5,1.0", help="datastore sizes as fractions of the training pairs")
    parser.add_argument("--scaling-beam", type=int, default=None, help="beam for the datastore-size runs (default: the smallest of --beams)")
    parser.add_argument("--scaling-limit", type=int, default=1000,
                        help="test rows (the first N) of the datastore-size runs (default: %(default)s; 0: all)")
    parser.add_argument("--store-dir", type=Path, default=None, help="datastores per task (default: OUT/stores)")
    parser.add_argument("--index", default=None, help="faiss factory for stores built here (default: the datastore default)")
    parser.add_argument("--pairs", default="0", help="retrieval scopes the tuning of a new store tries, comma list: 0 = the "
                        "whole store, N = each input's N nearest training pairs (SK-MT) (default: %(default)s)")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (ChemNet) in the text2mol metrics")
    parser.add_argument("--no-knn", action="store_true",
                        help="bench the model and the retrieval baseline only: no datastores, tuning, λ sweep or "
                             "datastore-size runs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (default: %(default)s)")
    parser.add_argument("--knn-lambdas", default=",".join(map(str, SWEEP_LAMBDAS)),
                        help="kNN weights λ of the dev sweep (plot and table), each in [0, 1]")
    parser.add_argument("--sweep-rows", type=int, default=60, help="dev rows decoded per λ of the sweep (0: likelihood only)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs per batch everywhere (default: decoding 32 greedy and 64 beam search, "
                             "builds and tuning 32)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens generated per output")
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="decoding option for every model system (with and without kNN); default: the "
                             "model's recommendation per task (t2m.json \"decoding\"), 1 = off")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None,
                        help="decoding option for every model system (with and without kNN); default: the "
                             "model's recommendation per task, 0 = off")
    parser.add_argument("--examples", type=int, default=3, help="best / worst / changed rows per task in the report")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--fresh", action="store_true", help="decode again even where cached predictions match")
    parser.add_argument("--in-process", action="store_true",
                        help="build and tune datastores in the bench process (default: a child process, so that "
                             "their peak memory is measured apart from decoding's)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow a checkpoint with pickled weights")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.add_argument("--published", type=Path, default=None,
                        help="folder of MolT5's published test predictions, scored beside the systems and compared "
                             "with the default system (default: molt5_predictions/ beside the ChEBI-20 folder, if there)")
    parser.add_argument("--no-published", action="store_true", help="do not score published predictions")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, each with an equal share of the CPUs: the tasks' datastores are "
                             "built and tuned at once, and every decoding is split over them (speeds are then "
                             "of all of them together; default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of the command line's arguments (ValueError naming a field out of range)."""
    if args.scaling_limit is not None and args.scaling_limit < 0:  # 0 is the command line's "every test row"
        raise UsageError(f"--scaling-limit {args.scaling_limit}: must be 0 or more (0: every test row)")
    return BenchConfig(
        out=args.out, model=args.model, data=args.data, setting=args.setting, dev_size=args.dev_size,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), beams=_list(args, "beams", int),
        limit=args.limit, dev_limit=args.dev_limit, fractions=_list(args, "fractions", float),
        scaling_beam=args.scaling_beam, scaling_limit=args.scaling_limit or None, store_dir=args.store_dir,
        index=args.index, pairs=_list(args, "pairs", int), fcd=not args.no_fcd, bootstrap=args.bootstrap,
        knn_lambdas=_list(args, "knn_lambdas", float), sweep_rows=args.sweep_rows, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, examples=args.examples, seed=args.seed, fresh=args.fresh,
        isolate_builds=not args.in_process, allow_pickle=args.allow_pickle, progress=not args.no_progress,
        jobs=args.jobs, knn=not args.no_knn, published=args.published, compare_published=not args.no_published)


def check_options(args: argparse.Namespace) -> BenchConfig:
    """The run's :class:`BenchConfig`, refused before the model loads (UsageError, exit 2) when an option is
    out of range or the checkpoint, ChEBI-20 or an output folder cannot be used."""
    with usage_errors(args):
        config = config_from_args(args)
        checkpoint_dir(config.model, config.allow_pickle)
    check_chebi20(config.data)
    check_existing("--published", config.published)
    with usage_errors(args):
        check_writable_folder(config.out, "out")
        if config.store_dir is not None:
            check_writable_folder(config.store_dir, "store_dir")
    return config


def run(args: argparse.Namespace) -> int:
    config = check_options(args)

    bench = run_bench(config)
    print((config.out / "bench.md").read_text(encoding="utf-8"))
    print(f"t2m bench: wrote {config.out / 'bench.json'}, bench.md, plots/, report.html in {bench['seconds']} s "
          f"(peak memory {bench['peak_rss_mb']} MB)")
    return 0
