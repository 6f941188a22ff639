"""``t2m eval PREDICTIONS``: score a predictions file, print a table with the signature, optionally JSON.

Thin wrapper over :func:`evaluation.evaluate.evaluate_file`. Exit status 0 on success, 2 on a usage or
input problem (bad file, missing resource), with a message saying what to fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evaluation.evaluate import evaluate_file
from evaluation.predictions import PredictionsFormatError, read_predictions, task_contradiction
from evaluation.text_tokenizer import TokenizerNotFoundError
from evaluation.wordnet import WordNetMissingError
from t2m.cli.checks import with_flags
from t2m.io import check_writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "predictions", type=Path, help="MolT5 3-column TSV (header description|SMILES, ground truth, output) or JSONL"
    )
    parser.add_argument(
        "--task", choices=("text2mol", "mol2text"), default=None, help="default: from the TSV header / JSONL task field"
    )
    parser.add_argument(
        "--text-tokenizer",
        default=None,
        metavar="DIR_OR_ID",
        help="tokenizer for caption BLEU/METEOR (default: $T2M_SCIBERT or $T2M_SHARED_DATA/scibert_scivocab_uncased)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="also write {n, task, signature, metrics} here"
    )
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (text2mol): no torch, much faster")
    parser.add_argument(
        "--strict", action="store_true", help="fix MolT5's quirks: empty output invalid, similarities over all rows"
    )
    parser.add_argument("--no-sacrebleu", action="store_true", help="skip the extra sacrebleu score")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="score the other rows when some are malformed (listed in the notes)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the reference-side cache (same numbers, slower)"
    )
    parser.add_argument("--force", action="store_true",
                        help="score as --task even when the file's header or ground truths say the other task")
    parser.add_argument("--workers", type=int, default=None, help="processes to use (default: up to 2)")
    parser.add_argument("--timing", action="store_true", help="print the wall time of each phase to stderr")


def one_line(error: BaseException) -> str:
    """The message of ``error`` as one line (a missing resource's message spans several)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__


def _write_json(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _is_command_process() -> bool:
    """True when this process is the ``t2m`` command itself (``t2m ...`` or ``python -m t2m ...``), not a
    program or test runner that called :func:`run`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("t2m", "t2m.__main__"):
        return True
    return Path(getattr(main, "__file__", None) or "").name == "t2m"


def run(args: argparse.Namespace) -> int:
    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers {args.workers}: must be 1 or more")
        check_writable_file(args.json, "json")  # before scoring
        if args.task is not None and not args.force:
            reason = task_contradiction(read_predictions(args.predictions, skip_bad_rows=args.skip_bad_rows), args.task)
            if reason:
                other = "mol2text" if args.task == "text2mol" else "text2mol"
                raise ValueError(f"{args.predictions}: --task {args.task}, but {reason}; pass --task {other} (or "
                                 f"leave --task out), or --force to score it as {args.task} anyway")
        result = evaluate_file(
            args.predictions,
            args.task,
            text_tokenizer=args.text_tokenizer,
            strict=args.strict,
            fcd=not args.no_fcd,
            sacrebleu=not args.no_sacrebleu,
            skip_bad_rows=args.skip_bad_rows,
            use_cache=not args.no_cache,
            workers=args.workers,
        )
    except (PredictionsFormatError, TokenizerNotFoundError, WordNetMissingError, FileNotFoundError, ValueError) as e:
        print(f"t2m eval: error: {with_flags(one_line(e), args.flag_names)}", file=sys.stderr)
        return 2
    print(result.format_table(f"{args.predictions}  ({result.task}, n={result.n}, mode={result.signature['mode']})"))
    if args.json is not None:
        _write_json(args.json, result.to_json())
    if args.timing:
        print(f"t2m eval: timing: {result.format_timings()}", file=sys.stderr)
    if _is_command_process():
        _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """End the ``t2m eval`` process without the interpreter's teardown, once its output is out and its
    worker processes are gone: with torch loaded, the teardown (garbage collections over ~10^5 objects,
    then module and library clean-up) took 0.5 s of a ~8 s text2mol evaluation. Returns instead, for a
    normal exit, if a worker process is still alive after a few seconds."""
    import gc
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    gc.freeze()  # (if we do return: spares the shutdown collections most of their walk)
    deadline = time.monotonic() + 5
    sentinels = []
    for child in multiprocessing.active_children():  # the lanes, told to stop when their work ended
        # join reaps it (so that its CPU time is counted as ours), unless its executor's thread already has
        # -- then multiprocessing still lists it as alive: its sentinel says whether it ended
        child.join(max(0.0, deadline - time.monotonic()))
        try:
            sentinels.append(child.sentinel)
        except ValueError:  # closed: ended
            pass
    if len(wait(sentinels, timeout=0)) < len(sentinels):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
