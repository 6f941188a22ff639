"""What the commands check before any model loads, and how the core's errors read on the command line.

t2m's core names an option by its field, in Python's spelling (``num_beams=0: must be 1 or more``, ``pass
overwrite=True``: :mod:`t2m.errors`); only this package knows flags. :func:`flag_names` reads them off a
command's parser -- each option's field (its ``dest``) and each switch by the value it sets
(``overwrite=True``, ``resume=False``) -- plus the command module's ``FIELD_FLAGS`` for fields named
otherwise in the core (``num_return_sequences``: ``--n-best``); :func:`with_flags` writes a message with
them. ``t2m.cli`` gives every parsed command its table (``args.flag_names``) and shows every error through
it. A refusal found here is a :class:`UsageError` (exit status 2), as is the core's
:class:`t2m.errors.OptionError`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping, TypeVar

from t2m.data import resolve_chebi20_dir
from t2m.errors import error_line

Number = TypeVar("Number", int, float)

# a field in Python's spelling: ``name=`` (followed by its value) or ``name=True`` / ``name=False``
_SPELLING = re.compile(r"(?<![\w.=/-])([a-z_][a-z0-9_]*)=(?:(True|False)\b)?")


class UsageError(Exception):
    """An option or path the command cannot use, found before any work started: exit status 2."""


def flag_names(parser: argparse.ArgumentParser, aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """The flag of each field ``parser`` sets: ``{"num_beams": "--num-beams", "overwrite=True": "--overwrite",
    "resume=False": "--no-resume", ...}``, and ``aliases`` (the core's names for fields the parser stores
    under another, e.g. ``{"num_return_sequences": "--n-best", "use_gpu=False": "--gpu no"}``)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        if not flags or action.dest in ("help", "version"):
            continue
        if isinstance(action, argparse._StoreTrueAction):
            names[f"{action.dest}=True"] = flags[0]
        elif isinstance(action, argparse._StoreFalseAction):
            names[f"{action.dest}=False"] = flags[0]
        elif action.nargs != 0:
            names[action.dest] = flags[0]
    return {**names, **(aliases or {})}


def with_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each field in Python's spelling that ``flags`` knows written as its flag:
    ``num_beams=0`` -> ``--num-beams 0``, ``overwrite=True`` -> ``--overwrite``."""
    def flag(match: re.Match) -> str:
        name, switch = match.group(1), match.group(2)
        if switch:
            return flags.get(f"{name}={switch}", match.group(0))
        return f"{flags[name]} " if name in flags else match.group(0)

    return _SPELLING.sub(flag, message)


@contextlib.contextmanager
def usage_errors(args: argparse.Namespace) -> Iterator[None]:
    """Run a command's checks: a ValueError they raise (the core's :class:`t2m.errors.OptionError`, a
    range check of an option object) becomes a :class:`UsageError` in the command's flags."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(with_flags(error_line(error), getattr(args, "flag_names", {}))) from None


def parse_list(option: str, text: str | None, kind: Callable[[str], Number]) -> list[Number] | None:
    """The comma-separated values of flag ``option`` (None when ``text`` is None), each read by ``kind``; an
    empty list, or a value that is no number, is a UsageError (their ranges: :func:`t2m.errors.check_each`)."""
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
        values.append(value)
    return values


def check_chebi20(data: str | os.PathLike | None) -> Path:
    """The ChEBI-20 folder ``--data`` names (or t2m finds when it is left out); else UsageError."""
    try:
        return resolve_chebi20_dir(data)
    except FileNotFoundError as err:
        raise UsageError(f"--data {err}" if data is not None else f"{err} with --data DIR") from None


def check_existing(option: str, path: str | os.PathLike | None) -> None:
    """Refuse a ``path`` of flag ``option`` that does not exist (None: left out)."""
    if path is not None and not Path(path).exists():
        raise UsageError(f"{option} {path}: no such file or folder")
