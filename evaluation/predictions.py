"""Read prediction files: MolT5's 3-column TSV and JSONL.

TSV (what MolT5 publishes in ``predictions/`` and what ``t2m translate`` writes)::

    description<TAB>ground truth<TAB>output        (text2mol: description -> SMILES)
    SMILES<TAB>ground truth<TAB>output             (mol2text: SMILES -> description)

One header line, tab-separated, no quoting (quotes are ordinary characters), one row per line. Fields are
taken verbatim: unlike the ChEBI-20 data files, a backslash is a backslash (MolT5's prediction files carry
single, unescaped backslashes). An ``output`` may be the empty string. Blank lines are skipped, as
``csv.DictReader`` does.

JSONL: one JSON object per line with

- ``reference`` (or ``ground_truth`` / ``"ground truth"``): the target string, required, non-empty;
- ``output`` (or ``prediction``): the system's string, required, may be ``""``;
- ``input`` (or ``source``, ``description``, ``SMILES``): optional;
- ``task``: optional, ``text2mol`` or ``mol2text``; if given it must be the same on every line.

A malformed row (wrong number of fields, missing or non-string field, empty reference, invalid JSON) is
never silently dropped: :func:`read_predictions` raises :class:`PredictionsFormatError`, one line naming the
bad ``file:line`` s and the fix, or with ``skip_bad_rows=True`` skips those rows and lists them in
``Predictions.skipped``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TASKS = ("text2mol", "mol2text")
# first TSV column -> task it implies
_INPUT_COLUMN_TASK = {"description": "text2mol", "SMILES": "mol2text"}
_REFERENCE_KEYS = ("reference", "ground_truth", "ground truth")
_OUTPUT_KEYS = ("output", "prediction")
_INPUT_KEYS = ("input", "source", "description", "SMILES")


class PredictionsFormatError(ValueError):
    """A predictions file that cannot be read as a whole; the message names each bad file:line."""


@dataclass
class Predictions:
    """Parallel lists of one predictions file, in file order."""

    references: list[str]
    outputs: list[str]
    inputs: list[str | None]
    task: str | None  # inferred from the TSV header or the JSONL ``task`` field; None if unknown
    path: Path | None = None
    line_numbers: list[int] = field(default_factory=list)  # 1-based line of each row in the file
    skipped: list[str] = field(default_factory=list)  # "file:line: problem" for each skipped row

    def __len__(self) -> int:
        return len(self.references)


def _problem(path: Path, line: int, what: str) -> str:
    return f"{path}:{line}: {what}"


# malformed rows named in full in the one-line error, and line numbers listed after them
_SHOWN_PROBLEMS, _LISTED_LINES = 3, 10
SKIP_FIX = "pass --skip-bad-rows to score the other rows"


def _raise_or_skip(problems: list[str], path: Path, skip_bad_rows: bool) -> None:
    """Raise :class:`PredictionsFormatError` for ``problems`` (``file:line: what``, file order) unless
    ``skip_bad_rows``: one line naming the first few rows and why, the lines of the rest, and the fix."""
    if not problems or skip_bad_rows:
        return
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    rest = problems[_SHOWN_PROBLEMS:]
    if rest:
        lines = [problem[len(str(path)) + 1:].split(":", 1)[0] for problem in rest]
        listed = ", ".join(lines[:_LISTED_LINES]) + (", ..." if len(lines) > _LISTED_LINES else "")
        shown += f"; and {len(rest)} more malformed row{'s' if len(rest) > 1 else ''} (line{'s' if len(rest) > 1 else ''} {listed})"
    fix = "fix this line" if len(problems) == 1 else "fix those lines"
    raise PredictionsFormatError(f"{shown}; {fix}, or {SKIP_FIX}")


def read_tsv_predictions(path: str | Path, skip_bad_rows: bool = False) -> Predictions:
    """Read MolT5's 3-column prediction TSV. Raises PredictionsFormatError on a bad header or bad rows."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:  # universal newlines, like MolT5's open()
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise PredictionsFormatError(
            f"{path}:1: empty file; expected a header line 'description|SMILES<TAB>ground truth<TAB>output'"
        )
    header = lines[0].split("\t")
    if "ground truth" not in header or "output" not in header:
        raise PredictionsFormatError(
            f"{path}:1: header {header!r} lacks 'ground truth' and/or 'output'; expected the MolT5 header "
            "'description<TAB>ground truth<TAB>output' (text2mol) or 'SMILES<TAB>ground truth<TAB>output' (mol2text)"
        )
    if len(set(header)) != len(header):
        raise PredictionsFormatError(f"{path}:1: duplicate column names in header {header!r}; name each column once "
                                     "('description' or 'SMILES', 'ground truth', 'output')")
    i_ref, i_out = header.index("ground truth"), header.index("output")
    input_cols = [c for c in header if c not in ("ground truth", "output")]
    i_in = header.index(input_cols[0]) if input_cols else None
    task = _INPUT_COLUMN_TASK.get(input_cols[0]) if input_cols else None

    refs: list[str] = []
    outs: list[str] = []
    ins: list[str | None] = []
    line_numbers: list[int] = []
    problems: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if line == "":
            continue  # csv.DictReader skips blank lines
        fields = line.split("\t")
        if fields == header:
            problems.append(_problem(path, lineno, "the header line again (files joined with cat keep each one's "
                                                   "header: delete this line)"))
            continue
        if len(fields) != len(header):
            problems.append(
                _problem(
                    path, lineno, f"{len(fields)} tab-separated fields, expected {len(header)} ({'|'.join(header)})"
                )
            )
            continue
        if fields[i_ref] == "":
            problems.append(_problem(path, lineno, "empty 'ground truth'"))
            continue
        refs.append(fields[i_ref])
        outs.append(fields[i_out])
        ins.append(fields[i_in] if i_in is not None else None)
        line_numbers.append(lineno)
    _raise_or_skip(problems, path, skip_bad_rows)
    return Predictions(refs, outs, ins, task, path, line_numbers, problems)


def _first_key(obj: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in obj), None)


def read_jsonl_predictions(path: str | Path, skip_bad_rows: bool = False) -> Predictions:
    """Read JSONL predictions (see module docstring). Raises PredictionsFormatError on bad rows."""
    path = Path(path)
    refs: list[str] = []
    outs: list[str] = []
    ins: list[str | None] = []
    line_numbers: list[int] = []
    problems: list[str] = []
    tasks: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(_problem(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})"))
                continue
            if not isinstance(obj, dict):
                problems.append(_problem(path, lineno, "expected a JSON object with 'reference' and 'output'"))
                continue
            k_ref, k_out, k_in = (_first_key(obj, keys) for keys in (_REFERENCE_KEYS, _OUTPUT_KEYS, _INPUT_KEYS))
            if k_ref is None or k_out is None:
                problems.append(
                    _problem(path, lineno, f"missing 'reference' and/or 'output' field (has {sorted(obj)})")
                )
                continue
            ref, out, inp = obj[k_ref], obj[k_out], obj.get(k_in) if k_in else None
            if not isinstance(ref, str) or not isinstance(out, str) or not (inp is None or isinstance(inp, str)):
                problems.append(_problem(path, lineno, "'reference', 'output' and 'input' must be strings"))
                continue
            if ref == "":
                problems.append(_problem(path, lineno, "empty 'reference'"))
                continue
            if "task" in obj:
                if obj["task"] not in TASKS:
                    problems.append(_problem(path, lineno, f"unknown task {obj['task']!r} (expected {' or '.join(TASKS)})"))
                    continue
                tasks.add(obj["task"])
            refs.append(ref)
            outs.append(out)
            ins.append(inp)
            line_numbers.append(lineno)
    if len(tasks) > 1:
        raise PredictionsFormatError(f"{path}: rows mix tasks {sorted(tasks)}; score each task from its own file")
    _raise_or_skip(problems, path, skip_bad_rows)
    return Predictions(refs, outs, ins, next(iter(tasks), None), path, line_numbers, problems)


def task_contradiction(preds: Predictions, task: str, sample: int = 200) -> str | None:
    """Why the content of ``preds`` says it is not a ``task`` file, or None: its TSV header or JSONL ``task``
    names the other task, or its ground truths are the other kind (captions hold spaces, SMILES never do:
    text2mol with over half of them spaced, mol2text with under a tenth)."""
    if preds.task is not None and preds.task != task:
        where = "its JSONL 'task' field" if preds.path is not None and preds.path.suffix.lower() in (".jsonl", ".json") \
            else "its header"
        return f"{where} says {preds.task}"
    refs = [r.strip() for r in preds.references[:sample] if r.strip()]
    if len(refs) < 3:
        return None
    spaced = sum(1 for r in refs if any(c.isspace() for c in r))
    if task == "text2mol" and spaced > len(refs) / 2:
        return f"{spaced} of its first {len(refs)} ground truths hold spaces, as captions do (SMILES never do)"
    if task == "mol2text" and spaced < len(refs) / 10:
        return f"{len(refs) - spaced} of its first {len(refs)} ground truths are single words, as SMILES are"
    return None


def read_predictions(path: str | Path, skip_bad_rows: bool = False) -> Predictions:
    """Read a predictions file, JSONL if it ends in ``.jsonl``/``.json`` or starts with ``{``, else MolT5 TSV."""
    path = Path(path)
    if path.is_dir():
        raise PredictionsFormatError(f"{path}: a folder, not a predictions file; give the TSV or JSONL file "
                                     "(e.g. what `t2m translate --output` wrote)")
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}; give the TSV or JSONL file (e.g. what "
                                "`t2m translate --output` wrote)")
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            return read_jsonl_predictions(path, skip_bad_rows)
        with open(path, encoding="utf-8") as f:
            first = f.read(1)
        if first == "{":
            return read_jsonl_predictions(path, skip_bad_rows)
        return read_tsv_predictions(path, skip_bad_rows)
    except UnicodeDecodeError as err:
        raise PredictionsFormatError(f"{path}:{_undecodable_line(path)}: not UTF-8 text ({err.reason}); save the file "
                                     "as UTF-8") from None


def _undecodable_line(path: Path) -> int:
    """The 1-based line of the first byte of ``path`` that is not UTF-8 (1 if there is none)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return data[: err.start].count(b"\n") + 1
    return 1
