"""The errors t2m's own checks raise, and how any error is shown in one line.

An option a call cannot use -- a value out of its range, a file that is not there, an output that would
replace a file -- is an :class:`OptionError` (a ValueError), found before any work starts. Its message
names the option by its field, in Python's spelling (``num_beams=0: must be 1 or more``, ``pass
overwrite=True``), never by a command-line flag: the command line (:mod:`t2m.cli`) writes those
spellings as its flags (``--num-beams 0``, ``--overwrite``) and exits with status 2.
"""

from __future__ import annotations

from typing import Sequence


class OptionError(ValueError):
    """An option (or the file or folder it names) a call cannot use, found before any work started; the
    message names it as ``field=value``."""


def check_range(field: str, value: float | None, low: float | None = None, high: float | None = None,
                low_open: bool = False, rule: str = "") -> None:
    """Refuse ``value`` of option ``field`` outside [``low``, ``high``] (``(low, high]`` when ``low_open``)
    with an :class:`OptionError` ``field=value: rule``; None (the option left out) passes. ``rule``: the
    rule and its meaning, e.g. "must be 1 or more (1: greedy search)"."""
    if value is None:
        return
    if (low is not None and not (value > low if low_open else value >= low)) or (high is not None and value > high):
        raise OptionError(f"{field}={value}: {rule}")


def check_each(field: str, values: Sequence[float], low: float | None = None, high: float | None = None,
               low_open: bool = False, rule: str = "", empty: bool = False) -> None:
    """Refuse a list ``values`` of option ``field`` with a value outside the range (as :func:`check_range`):
    an :class:`OptionError` ``field=v1,v2: v2 rule``; an empty one too unless ``empty``."""
    shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    if not len(values) and not empty:
        raise OptionError(f"{field}=: no values; give one or more")
    for value in values:
        try:
            check_range(field, value, low, high, low_open, rule)
        except OptionError:
            raise OptionError(f"{field}={shown}: {value:g} {rule}" if isinstance(value, float) else
                              f"{field}={shown}: {value} {rule}") from None


def error_line(error: BaseException) -> str:
    """The message of ``error`` as one line."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and \
            error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text or type(error).__name__
