"""``t2m ship``: a thin wrapper over :func:`t2m.recipes.ship_default_model.ship_default_model` (a trained
checkpoint made t2m's default model, with a model card scored on the test split).

    t2m ship RUN [--data DIR] [--jobs 2] [--rows N] [--beam-rows N]
    t2m ship OUT --card-only --from-bench BENCH_DIR [--history TEXT]
    t2m ship OUT --card-only --tasks text2mol   # measure one task again
    t2m ship OUT --card-only --memory train.txt [--memory-ranker ranker.json] --from-bench BENCH_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from t2m.cli.checks import UsageError
from t2m.recipes.ship_default_model import ship_default_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="training run folder (holds model/ and train_log.jsonl)")
    parser.add_argument("--data", default=None, help="ChEBI-20 folder")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes each translation is split over")
    parser.add_argument("--rows", type=int, default=None, help="score only the first N test rows")
    parser.add_argument("--beam-rows", type=int, default=None, help="beam 5 on the first N test rows (default: --rows)")
    parser.add_argument("--history", default=None, help="a line on how the run was trained (resumes, restarts)")
    parser.add_argument("--from-bench", type=Path, nargs="+", default=None,
                        help="take the test-split predictions from these t2m bench --out folders (the first that "
                             "has a setting) instead of translating")
    parser.add_argument("--dest", type=Path, default=None,
                        help="the model folder to write (default: the package's t2m/default_model)")
    parser.add_argument("--card-only", action="store_true",
                        help="do not copy RUN/model: rewrite the model card of the model in --dest")
    parser.add_argument("--memory", type=Path, default=None,
                        help="make this pairs file (ChEBI-20 TSV or JSONL, compressed or not) the model's memory: "
                             "stored xz-compressed as memory.tsv.xz, recorded in t2m.json, rankers refit on it")
    parser.add_argument("--memory-ranker", type=Path, default=None,
                        help="with --memory: rankers `t2m ranker` already fitted on that file (not refit)")
    parser.add_argument("--keep-float32", action="store_true",
                        help="store the weights as trained (float32) instead of bfloat16 (half the size)")
    parser.add_argument("--tasks", default="text2mol,mol2text",
                        help="measure only these tasks; with --card-only the card's sections of the others are "
                             "kept as they are (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if set(tasks) != {"text2mol", "mol2text"} and not args.card_only:
        raise UsageError("--tasks with fewer than both tasks needs --card-only (a new model is scored on both)")
    if args.memory_ranker is not None and args.memory is None:
        raise UsageError("--memory-ranker goes with --memory (rankers fitted on the new memory)")
    summary = ship_default_model(args.run, args.data, args.jobs, args.rows, args.beam_rows, args.history,
                                 args.from_bench, args.dest, args.card_only, tasks, args.memory, args.memory_ranker,
                                 args.keep_float32)
    print(json.dumps(summary, indent=2))
    return 0
