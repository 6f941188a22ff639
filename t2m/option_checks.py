"""Options checked before any model loads: ``t2m tune``, ``t2m bench`` and ``t2m datastore inspect``
(``t2m translate`` and ``t2m datastore build`` check theirs in their own modules, with these helpers).

Each check raises :class:`t2m.inputs.UsageError` (exit status 2, one line) naming the option, the value and
the fix, and reads nothing heavier than a datastore's ``datastore.json`` and array headers: a refused command
costs about a second and writes no file. :data:`t2m.cli.CHECKS` runs them ahead of each command's ``run``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

from t2m.inputs import UsageError
from t2m.tasks import TASKS

Number = TypeVar("Number", int, float)

CHECKPOINT_FIX = "give the folder `t2m train` wrote (config.json, weights, tokenizer)"


# ------------------------------------------------------------------------------------------ values


def _outside(value: float, low: float | None, high: float | None, low_open: bool) -> bool:
    return (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high)


def check_range(option: str, value: float | None, low: float | None = None, high: float | None = None,
                low_open: bool = False, what: str = "") -> None:
    """Refuse ``value`` of ``option`` outside [``low``, ``high``] (``(low, high]`` when ``low_open``); None
    (the option left out) passes. ``what``: the rule and its meaning, e.g. "must be 1 or more (1: greedy)"."""
    if value is not None and _outside(value, low, high, low_open):
        raise UsageError(f"{option} {value}: {what}")


def parse_list(option: str, text: str | None, kind: Callable[[str], Number], what: str,
               low: float | None = None, high: float | None = None, low_open: bool = False) -> list[Number] | None:
    """The comma-separated values of ``option`` (None when ``text`` is None), each read by ``kind`` and
    checked as :func:`check_range` does; an empty list, or a value that is no number, is refused."""
    if text is None:
        return None
    kind_name = "whole number" if kind is int else "number"
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise UsageError(f"{option} {text!r}: no values; give comma-separated {kind_name}s, e.g. {option} "
                         f"{'1,5' if kind is int else '0.1,0.5'}")
    values = []
    for part in parts:
        try:
            value = kind(part)
        except ValueError:
            value = None
        if value is None or value != value:  # (NaN)
            raise UsageError(f"{option} {text}: {part!r} is not a {kind_name}; give comma-separated {kind_name}s")
        if _outside(value, low, high, low_open):
            raise UsageError(f"{option} {text}: {part} {what}")
        values.append(value)
    return values


# ------------------------------------------------------------------------------------------ paths


def check_checkpoint(option: str, path: str | os.PathLike, allow_pickle: bool, fix: str = CHECKPOINT_FIX) -> Path:
    """The checkpoint folder ``path`` of ``option``; UsageError when it is none (no folder, no config.json,
    no weights, or pickled weights without --allow-pickle). ``fix``: what to do instead."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{option} {path}: no such folder; {fix}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise UsageError(f"{option} {path}: not a checkpoint folder (no config.json); {fix}")
    has_safe = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("pytorch_model*.bin"))
    if not has_safe and not has_pickle:
        raise UsageError(f"{option} {path}: no weights (model.safetensors) in the folder; {fix}")
    if not has_safe and not allow_pickle:
        raise UsageError(f"{option} {path}: only pickled weights (pytorch_model.bin); pass --allow-pickle if you "
                         "trust the checkpoint")
    return path


def check_model_option(model: str | os.PathLike | None, allow_pickle: bool) -> Path:
    """``--model`` of a command whose default is the shipped model: the checkpoint folder to load."""
    from t2m.modeling import default_model_dir

    if model is None:
        path = default_model_dir()
        if not (path / "config.json").is_file():
            raise UsageError(f"{path}: the shipped model is not installed; pass a checkpoint folder with --model DIR")
        return path
    return check_checkpoint("--model", model, allow_pickle, f"{CHECKPOINT_FIX}, or leave --model out for the shipped "
                                                            "model")


def check_store(option: str, path: str | os.PathLike, task: str | None = None) -> Any:
    """The datastore in ``path`` (:class:`datastore.store.Datastore`, arrays memory-mapped, not read),
    its files' sizes checked against ``datastore.json`` and, with ``task``, its task; else UsageError."""
    from datastore.store import Datastore, DatastoreError

    if not Path(path).is_dir():
        what = "no such folder" if not Path(path).exists() else "a file, not a folder"
        raise UsageError(f"{option} {path}: {what}; give the folder `t2m datastore build --out` wrote")
    try:
        store = Datastore.load(path)
        if task is not None:
            store.check_matches(task=task)
    except DatastoreError as err:
        raise UsageError(f"{option} {err}") from None
    if store.task not in TASKS:
        raise UsageError(f"{option} {path}: {Path(path) / 'datastore.json'} names task {store.task!r}, not "
                         f"{' or '.join(TASKS)}; rebuild the store with `t2m datastore build --task TASK`")
    return store


def check_chebi20(data: str | os.PathLike | None) -> Path:
    """The ChEBI-20 folder ``--data`` names (or t2m finds when it is left out); else UsageError."""
    from t2m.data import resolve_chebi20_dir

    try:
        return resolve_chebi20_dir(data)
    except FileNotFoundError as err:
        raise UsageError(f"--data {err}" if data is not None else f"{err} with --data DIR") from None


def check_existing(option: str, path: str | os.PathLike | None) -> None:
    """Refuse a ``path`` of ``option`` that does not exist (None: left out)."""
    if path is not None and not Path(path).exists():
        raise UsageError(f"{option} {path}: no such file or folder")


def check_writable_folder(option: str, path: str | os.PathLike) -> None:
    """Refuse a folder ``option`` would create or write into that cannot be: a file is in its place (or in
    a parent's), or the nearest existing folder is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: a file, not a folder; give a folder path (it is created)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder; give another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} is not writable; give a folder you may write to")


def check_writable_file(option: str, path: str | os.PathLike | None) -> None:
    """Refuse a file ``option`` would write that cannot be written: a folder in its place, or a parent that is
    a file or not writable (None: left out)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: a folder; give a file path")
    check_writable_folder(option, path.parent if str(path.parent) else Path("."))


# ------------------------------------------------------------------------------------------ commands


def check_tune(args: argparse.Namespace) -> None:
    """``t2m tune``: the grid, the decoding options, the checkpoint, the store and ChEBI-20."""
    parse_list("--lambdas", args.lambdas, float, "must be in [0, 1] (0: the model alone)", 0, 1)
    parse_list("--ks", args.ks, int, "must be 1 or more", 1)
    parse_list("--temperatures", args.temperatures, float, "must be > 0", 0, low_open=True)
    parse_list("--pairs", args.pairs, int, "must be 0 or more (0: the whole store)", 0)
    check_range("--finalists", args.finalists, 1, what="must be 1 or more")
    check_range("--num-beams", args.num_beams, 1, what="must be 1 or more (1: greedy search)")
    check_range("--batch-size", args.batch_size, 1, what="must be 1 or more")
    check_range("--max-new-tokens", args.max_new_tokens, 1, what="must be 1 or more")
    check_range("--dev-rows", args.dev_rows, 1, what="must be 1 or more (leave it out for every dev row)")
    check_checkpoint("--model", args.model, args.allow_pickle)
    store = check_store("--store", args.store)
    meta = store.path / "datastore.json"
    if not args.dry_run and not (os.access(meta, os.W_OK) and os.access(store.path, os.W_OK)):
        raise UsageError(f"--store {store.path}: {meta} is not writable, and tune writes its choice there; make it "
                         "writable, or pass --dry-run")
    check_chebi20(args.data)


def check_bench(args: argparse.Namespace) -> None:
    """``t2m bench``: the lists, counts and decoding options, the checkpoint, ChEBI-20 and the output folders."""
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = [task for task in tasks if task not in TASKS]
    if not tasks or unknown:
        raise UsageError(f"--tasks {args.tasks}: {'no task' if not tasks else repr(unknown[0]) + ' is no task'}; "
                         f"give a comma list of {', '.join(TASKS)}")
    beams = parse_list("--beams", args.beams, int, "must be 1 or more (1: greedy search)", 1)
    if args.scaling_beam is not None and args.scaling_beam not in beams:
        raise UsageError(f"--scaling-beam {args.scaling_beam}: must be one of --beams {args.beams} (the 100% point of "
                         "the datastore-size runs is the main model + kNN run at that beam)")
    parse_list("--fractions", args.fractions, float, "must be in (0, 1] (1: every training pair)", 0, 1,
               low_open=True)
    parse_list("--lambda-sweep", args.lambda_sweep, float, "must be in [0, 1]", 0, 1)
    parse_list("--pairs", args.pairs, int, "must be 0 or more (0: the whole store)", 0)
    for option, value, low, what in (
            ("--limit", args.limit, 1, "must be 1 or more (leave it out for every test row)"),
            ("--dev-limit", args.dev_limit, 1, "must be 1 or more (leave it out for every dev row)"),
            ("--dev-size", args.dev_size, 1, "must be 1 or more"),
            ("--scaling-limit", args.scaling_limit, 0, "must be 0 or more (0: every test row)"),
            ("--bootstrap", args.bootstrap, 1, "must be 1 or more"),
            ("--sweep-rows", args.sweep_rows, 0, "must be 0 or more (0: likelihood only)"),
            ("--batch-size", args.batch_size, 1, "must be 1 or more"),
            ("--max-new-tokens", args.max_new_tokens, 1, "must be 1 or more"),
            ("--no-repeat-ngram-size", args.no_repeat_ngram_size, 0, "must be 0 or more (0: off)"),
            ("--examples", args.examples, 0, "must be 0 or more"),
            ("--jobs", args.jobs, 1, "must be 1 or more (1: this process)")):
        check_range(option, value, low, what=what)
    check_range("--repetition-penalty", args.repetition_penalty, 0, low_open=True, what="must be > 0 (1: off)")
    check_model_option(args.model, args.allow_pickle)
    check_chebi20(args.data)
    check_writable_folder("--out", args.out)
    if args.store_dir is not None:
        check_writable_folder("--store-dir", args.store_dir)


def check_inspect(args: argparse.Namespace) -> None:
    """``t2m datastore inspect``: the kNN settings, the input, the checkpoint, the store and --json."""
    if not args.input.strip():
        raise UsageError("INPUT is empty; give the text to translate (a description for text2mol, a SMILES for "
                         "mol2text)")
    check_range("--k", args.k, 1, what="must be 1 or more")
    check_range("--lambda", args.lambda_, 0, 1, what="must be in [0, 1]")
    check_range("--temperature", args.temperature, 0, low_open=True, what="must be > 0")
    check_range("--neighbours", args.neighbours, 0, what="must be 0 or more")
    check_range("--max-new-tokens", args.max_new_tokens, 1, what="must be 1 or more")
    check_checkpoint("--model", args.model, args.allow_pickle)
    check_store("--store", args.store, task=args.task)
    check_existing("--data", args.data)
    check_writable_file("--json", args.json)


def check_datastore(args: argparse.Namespace) -> None:
    """``t2m datastore``: inspect's options (build checks its own: :func:`t2m.cli.datastore._check_build`)."""
    if getattr(args, "datastore_command", None) == "inspect":
        check_inspect(args)
