"""Reading the inputs of a translation: a file (plain text, ChEBI-20/MolT5 TSV, JSONL) or texts, as rows
that stay aligned with the outputs (:data:`FORMATS`: how a file is read).

Every row of the input gives one row: a row that cannot be read (too few fields, broken JSON, no input
key) keeps its place with ``problem`` saying why. A file that cannot be read at all raises
:class:`t2m.errors.OptionError` naming the file, the line and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2m.data import unescape_smiles
from t2m.errors import OptionError
from t2m.tasks import MOL2TEXT, TEXT2MOL

FORMATS = ("auto", "text", "tsv", "jsonl")
# the column (TSV header, JSONL key) holding each task's input and its reference, lower case
SOURCE_COLUMN = {TEXT2MOL: "description", MOL2TEXT: "smiles"}
REFERENCE_COLUMN = {TEXT2MOL: "smiles", MOL2TEXT: "description"}


@dataclass
class InputRow:
    """One row of the input: its line in the file (1-based; for TEXT arguments, its position), the text to
    translate, the reference when the file has one, and ``problem`` when the row cannot be read."""

    line: int
    source: str
    reference: str = ""
    cid: str | None = None
    problem: str | None = None


@dataclass
class Inputs:
    kind: str  # "text", "tsv" or "jsonl": also the output's format
    rows: list[InputRow]
    digest: str = ""  # sha256 of the input's bytes (or TEXT arguments): what a resumed run must match
    path: Path | None = None
    columns: dict[str, str] = field(default_factory=dict)


def _decode(label: str, data: bytes) -> str:
    """The text of ``data`` (a UTF-8 BOM dropped); OptionError (starting with ``label``, e.g.
    ``input=FILE``) for a binary or non-UTF-8 file."""
    if b"\x00" in data[:65536]:
        raise OptionError(f"{label}: a binary file, not text; give a UTF-8 text, TSV or JSONL file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise OptionError(f"{label}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None


def split_lines(text: str) -> list[str]:
    """Lines split on ``\\n`` only (a stray ``\\r`` or form feed inside a line stays in it), each without a
    trailing ``\\r``; blank lines at the end of the file are not rows."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _header(line: str) -> list[str]:
    return [h.strip().casefold() for h in line.split("\t")]


def detect_format(path: Path, lines: list[str], task: str, label: str | None = None) -> str:
    """``auto``'s choice for a file of ``lines`` (see the module docstring); OptionError (starting with
    ``label``, default ``input=PATH``) when it cannot tell."""
    label = label or f"input={path}"
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return "text"  # nothing but blank lines: no rows
    first = lines[start]
    if path.suffix.lower() in (".jsonl", ".ndjson") or first.lstrip().startswith("{"):
        return "jsonl"
    header = _header(first)
    known = {"cid", "smiles", "description", "ground truth", "output"}
    if SOURCE_COLUMN[task] in header:
        return "tsv"
    if known & set(header):
        named = ", ".join(h.strip() for h in first.split("\t") if h.strip())
        raise OptionError(
            f"{label}:1: a TSV header ({named}) without a '{SOURCE_COLUMN[task]}' column, which {task} "
            f"translates; add that column, or pass format=text to translate each whole line")
    if any("\t" in line for line in lines):
        number = next(i for i, line in enumerate(lines, start=1) if "\t" in line)
        raise OptionError(
            f"{label}:{number}: tab-separated, but line 1 is no header naming a '{SOURCE_COLUMN[task]}' "
            f"column; add a header line (e.g. CID<TAB>SMILES<TAB>description), or pass format=text to "
            f"translate each whole line")
    return "text"


def _read_text(lines: list[str]) -> list[InputRow]:
    return [InputRow(line=n, source=line) for n, line in enumerate(lines, start=1)]


def _read_tsv(label: str, lines: list[str], task: str) -> tuple[list[InputRow], dict[str, str]]:
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return [], {}
    header = _header(lines[start])
    source = SOURCE_COLUMN[task]
    if source not in header:
        raise OptionError(
            f"{label}:{start + 1}: the TSV header ({', '.join(h.strip() for h in lines[start].split(chr(9)) if h.strip())}) has no "
            f"'{source}' column, which {task} translates; name the input column '{source}', or pass format=text")
    i_source = header.index(source)
    reference = next((c for c in (REFERENCE_COLUMN[task], "ground truth") if c in header and c != source), None)
    i_reference = header.index(reference) if reference else None
    i_cid = header.index("cid") if "cid" in header else None
    unescape = {i for i, name in enumerate(header) if name == "smiles"}
    rows = []
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        fields = line.split("\t")
        if not line.strip():
            rows.append(InputRow(line=number, source=""))  # flagged "empty input" by the translator
            continue
        if len(fields) != len(header):
            rows.append(InputRow(line=number, source="", problem=(
                f"{len(fields)} tab-separated fields, expected {len(header)} ({', '.join(header)})")))
            continue
        fields = [unescape_smiles(f) if i in unescape else f for i, f in enumerate(fields)]
        rows.append(InputRow(line=number, source=fields[i_source],
                             reference=fields[i_reference] if i_reference is not None else "",
                             cid=fields[i_cid] if i_cid is not None else None))
    columns = {"source": source, **({"reference": reference} if reference else {})}
    return rows, columns


def _value(obj: dict, keys: dict[str, str], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in keys:
            return keys[name], obj[keys[name]]
    return None, None


def _read_jsonl(lines: list[str], task: str) -> list[InputRow]:
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            rows.append(InputRow(line=number, source=""))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(InputRow(line=number, source="", problem=f"invalid JSON ({err.msg} at column {err.colno})"))
            continue
        except (ValueError, RecursionError) as err:  # e.g. an integer too long to convert, nesting too deep
            rows.append(InputRow(line=number, source="", problem=f"invalid JSON ({type(err).__name__})"))
            continue
        if not isinstance(obj, dict):
            rows.append(InputRow(line=number, source="", problem=f"a JSON {type(obj).__name__}, not an object"))
            continue
        keys: dict[str, str] = {}
        for key in obj:  # case-insensitive; an exact lower-case key wins over another spelling
            folded = key.casefold()
            if folded not in keys or key == folded:
                keys[folded] = key
        key, value = _value(obj, keys, ("input", SOURCE_COLUMN[task]))
        _, reference = _value(obj, keys, (REFERENCE_COLUMN[task], "reference", "ground truth"))
        _, cid = _value(obj, keys, ("cid",))
        problem = None
        if key is None or value is None:
            shown = ", ".join(map(repr, obj)) or "none"
            problem = f"no 'input' or '{SOURCE_COLUMN[task]}' key (keys: {shown})"
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problem = f"'{key}' is a JSON {type(value).__name__}, not a string"
        rows.append(InputRow(
            line=number, source="" if problem else str(value), problem=problem,
            reference=reference if isinstance(reference, str) else "",
            cid=None if cid is None or isinstance(cid, (dict, list)) else str(cid)))
    return rows


def read_inputs(path: str | os.PathLike, task: str, format: str = "auto") -> Inputs:
    """The rows of an input file (see the module docstring). Raises :class:`t2m.errors.OptionError` for a file
    that cannot be read at all (missing, a folder, binary, not UTF-8, a format it cannot tell)."""
    path = Path(path)
    if not path.exists():
        raise OptionError(f"input={path}: no such file")
    if path.is_dir():
        raise OptionError(f"input={path}: a folder, not a file; give the file to translate")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise OptionError(f"input={path}: cannot be read ({err.strerror})") from None
    return parse_inputs(data, task, format, path)


def parse_inputs(data: bytes, task: str, format: str = "auto", path: str | os.PathLike = "input",
                 label: str | None = None) -> Inputs:
    """The rows of a file's bytes ``data``, as :func:`read_inputs` reads them (``path``: the file's name, whose
    suffix ``auto`` reads, kept in :attr:`Inputs.path`); an OptionError's message starts with ``label`` (default
    ``input=PATH``), e.g. ``the file NAME`` for an upload."""
    path = Path(path)
    label = label or f"input={path}"
    lines = split_lines(_decode(label, data))
    kind = detect_format(path, lines, task, label) if format == "auto" else format
    columns: dict[str, str] = {}
    if kind == "jsonl":
        rows = _read_jsonl(lines, task)
    elif kind == "tsv":
        rows, columns = _read_tsv(label, lines, task)
    else:
        rows = _read_text(lines)
    return Inputs(kind, rows, hashlib.sha256(data).hexdigest(), path, columns)
