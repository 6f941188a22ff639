"""Write ``docs/errors.md``: every bad input of issue 18 run through the CLI as a user runs it, with the exit
status and the exact lines the user sees.

    python tests/benchmarks/error_messages.py                  # writes docs/errors.md (about 5 minutes)
    python tests/benchmarks/error_messages.py --only eval      # the cases of groups naming 'eval', printed
    python tests/benchmarks/error_messages.py --out FILE

Each case runs ``python -m t2m ...`` in its own copy of a small workspace (the files below, named relative
to it, so that the messages read as a user's would), with the shipped model and a few new tokens where a
model runs. The table shows the exit status, the lines on stderr (progress bars left out) and, for a
command that is refused, whether the workspace's files were left as they were; a case whose exit status is
not the expected one stops the script. Cases that need ChEBI-20 (the datastore builds) read the first 24
validation rows from ``$T2M_SHARED_DATA`` (default ``<repo>/../shared/data``) and are left out without it.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("T2M_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "tests"))

CHEBI_HEADER = "CID\tSMILES\tdescription"
MOL2TEXT_ROWS = ["CCO\tThe molecule is ethanol.\tThe molecule is an alcohol.",
                 "CCN\tThe molecule is an amine.\tThe molecule is ethylamine.",
                 "CCC\tThe molecule is propane.\tThe molecule is an alkane."]
RESUME_SMILES = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "CCCl", "C=CC", "OCC(O)CO", "CC(C)O"]
M2T = ("translate", "--task", "mol2text", "--max-new-tokens", "4")
T2M = ("translate", "--task", "text2mol", "--max-new-tokens", "4")
MODEL = str(REPO / "t2m" / "default_model")
BUILD = ("datastore", "build", "--model", MODEL, "--data", "pairs24.tsv", "--task", "text2mol", "--out", "built",
         "--index", "none", "--batch-size", "2", "--chunk-batches", "1")
TUNE = ("tune", "--store", "store", "--model", MODEL)
INSPECT = ("datastore", "inspect", "--store", "store", "--model", MODEL)
_BAR = re.compile(r"\d+%\|")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Case:
    """One bad input: the issue's words for it, the command after ``t2m``, the exit status it must give."""

    group: str
    what: str
    argv: tuple[str, ...]
    expect: int
    prepare: Callable[[Path], None] | None = None  # changes the workspace first (e.g. interrupts a run)
    interrupt: Callable[[Path], bool] | None = None  # Ctrl-C (SIGINT) once this says so
    env: dict[str, str] = field(default_factory=dict)
    outcome: Callable[[Path, str], str] | None = None  # a note on the result (workspace, stdout)
    needs_chebi: bool = False


# ------------------------------------------------------------------------------------------ workspace


def make_workspace(folder: Path) -> None:
    """The files the cases read: inputs, stores, predictions, a pairs file."""
    from test_cli_errors import fake_store

    files = {
        "smiles.txt": "CCO\nCCN\n",
        "descriptions.txt": "The molecule is ethanol.\n",
        "pairs.tsv": f"{CHEBI_HEADER}\n1\tCCO\tThe molecule is ethanol.\n2\tCCN\tThe molecule is ethylamine.\n",
        "smiles.jsonl": '{"smiles": "CCO"}\n{"smiles": "CCN"}\n',
        "chebi.jsonl": '{"CID": "1", "SMILES": "CCO", "description": "The molecule is ethanol."}\n',
        "no_description.tsv": "CID\tSMILES\n1\tCCO\n",
        "headless.tsv": "1\tCCO\tThe molecule is ethanol.\n",
        "bom.txt": "\ufeffCCO\nCCN\n",
        "short_row.tsv": f"{CHEBI_HEADER}\n1\tCCO\tThe molecule is ethanol.\n2\tCCN\n3\tCCC\tThe molecule is propane.\n",
        "broken.jsonl": '{"smiles": "CCO"}\n{"smiles": "CCN"\n{"smiles": "CCC"}\n',
        "old.txt": "keep me\n",
        "resume.tsv": "SMILES\tdescription\n" + "".join(f"{s}\tThe molecule {i}.\n" for i, s in enumerate(RESUME_SMILES)),
        "captions.tsv": "SMILES\tground truth\toutput\n" + "\n".join(MOL2TEXT_ROWS) + "\n",
        "joined.tsv": f"SMILES\tground truth\toutput\n{MOL2TEXT_ROWS[0]}\nSMILES\tground truth\toutput\n"
                      f"{MOL2TEXT_ROWS[1]}\n",
        "one_bad.tsv": "description\tground truth\toutput\nd1\tCCO\tCCO\nd2\tCCN\n",
        "many_bad.tsv": "description\tground truth\toutput\n" + "d\tC\n" * 20,
        "header_only.tsv": "description\tground truth\toutput\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "binary.bin").write_bytes(b"\x7fELF\x00\x01\x02\xff\xfe")
    (folder / "latin1.txt").write_bytes("CCO\ncaf\xe9\n".encode("latin-1"))
    (folder / "latin1.tsv").write_bytes("description\tground truth\toutput\nd\tC\tC\ncaf\xe9\tC\tC\n".encode("latin-1"))
    (folder / "empty").mkdir()
    fake_store(folder / "store", "mol2text")
    fake_store(folder / "text2mol_store", "text2mol")
    truncated = fake_store(folder / "truncated_store", "mol2text")
    (truncated / "keys.npy").write_bytes((truncated / "keys.npy").read_bytes()[:-16])
    (fake_store(folder / "incomplete_store", "mol2text") / "rows.npy").unlink()
    existing = folder / "existing_store"
    existing.mkdir()
    (existing / "datastore.json").write_text("{}", encoding="utf-8")
    validation = SHARED / "chebi20" / "validation.txt"
    if validation.is_file():
        with validation.open(encoding="utf-8") as handle:
            (folder / "pairs24.tsv").write_text("".join(next(handle) for _ in range(25)), encoding="utf-8")


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------------------ running


def environ(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "T2M_SHARED_DATA": str(SHARED), "OMP_NUM_THREADS": "2",
           "COLUMNS": "200", **extra}
    env.pop("T2M_DEBUG", None)
    return env


def run(argv: tuple[str, ...], work: Path, env: dict[str, str],
        interrupt: Callable[[Path], bool] | None = None) -> tuple[int, str, str]:
    """Run ``t2m argv`` in ``work``; with ``interrupt``, press Ctrl-C once it says so. (status, stdout, stderr)"""
    command = [sys.executable, "-m", "t2m", *argv]
    if interrupt is None:
        done = subprocess.run(command, cwd=work, env=environ(env), capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout, done.stderr
    process = subprocess.Popen(command, cwd=work, env=environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 300
    while not interrupt(work):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"t2m {' '.join(argv)} ended before it could be interrupted: {process.communicate()}")
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def _default_sigint() -> None:
    """In the child: Ctrl-C's default handling (a shell starts background jobs with SIGINT ignored, and a
    Python started so never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def visible_lines(stderr: str) -> list[str]:
    """The lines a terminal would end up showing, progress bars (and transformers' own warnings) left out."""
    lines = []
    for line in _ANSI.sub("", stderr).split("\n"):
        for part in line.split("\r"):
            bar = _BAR.search(part)
            if bar:  # a progress bar, perhaps with a message printed after it on the same line
                tail = re.sub(r"^[^\]]*\]", "", part[bar.start():])
                part = tail
            if part.strip() and not part.startswith("[transformers]"):
                lines.append(part.rstrip())
    return lines


def readable(text: str, work: Path) -> str:
    """``text`` with this run's folders named as a user would see them."""
    for path, name in ((str(work) + "/", ""), (str(work), "."), (str(SHARED), "$T2M_SHARED_DATA"),
                       (str(REPO), "<repo>")):
        text = text.replace(path, name)
    return text


# ------------------------------------------------------------------------------------------ cases


def _partial_rows(at_least: int) -> Callable[[Path], bool]:
    def ready(work: Path) -> bool:
        partial = work / "pred.tsv.partial"
        return partial.is_file() and partial.read_text(encoding="utf-8").count("\n") >= at_least + 1

    return ready


def _after(seconds: float) -> Callable[[Path], bool]:
    """True once ``seconds`` have passed since its first call."""
    started: list[float] = []

    def ready(work: Path) -> bool:
        started.append(time.monotonic())
        return started[-1] - started[0] >= seconds

    return ready


def _chunks(at_least: int) -> Callable[[Path], bool]:
    def ready(work: Path) -> bool:
        return len(list(work.glob("built.tmp-build/chunks/c*.json"))) >= at_least

    return ready


RESUMABLE = (*M2T, "--input", "resume.tsv", "--output", "pred.tsv")
SLOW_CHUNKS = {"T2M_TRANSLATE_CHUNK": "2", "_T2M_TEST_CHUNK_DELAY": "3"}


def _interrupted_translation(work: Path) -> None:
    status, _, err = run(RESUMABLE, work, SLOW_CHUNKS, _partial_rows(2))
    assert status == 130, err


def _interrupted_build(work: Path) -> None:
    status, _, err = run(BUILD, work, {}, _chunks(2))
    assert status == 130, err


def _damaged_build(work: Path) -> None:
    _interrupted_build(work)
    chunk = work / "built.tmp-build" / "chunks" / "c000001.keys.npy"
    chunk.write_bytes(chunk.read_bytes()[:-64])


def _stdout_lines(work: Path, stdout: str) -> str:
    """How many lines the command wrote on stdout, and the first (cut at 100 characters)."""
    lines = stdout.split("\n")[:-1] if stdout.endswith("\n") else stdout.split("\n") if stdout else []
    first = (lines[0][:100] + " ...") if lines and len(lines[0]) > 100 else lines[0] if lines else ""
    return f"{len(lines)} line{'s' if len(lines) != 1 else ''} on stdout" + (f", the first: {first!r}" if lines else "")


def _stdout_text(work: Path, stdout: str) -> str:
    """The lines the command wrote on stdout."""
    return " / ".join(line.strip() for line in stdout.splitlines() if line.strip())


def _file_lines(name: str) -> Callable[[Path, str], str]:
    def note(work: Path, stdout: str) -> str:
        path = work / name
        if not path.is_file():
            return f"no {name} written"
        return f"{name}: {path.read_text(encoding='utf-8').count(chr(10))} lines"

    return note


def _kept(work: Path, stdout: str) -> str:
    partial = work / "pred.tsv.partial"
    rows = partial.read_text(encoding="utf-8").count("\n") - 1 if partial.is_file() else 0
    return f"pred.tsv.partial keeps {rows} rows; pred.tsv not written" if not (work / "pred.tsv").exists() else ""


def cases() -> list[Case]:
    c = Case
    return [
        # ---- translate: inputs read as they are, never silently wrong
        c("translate: inputs", "JSONL lines `{\"smiles\": \"CCO\"}` without a `cid` (every row was skipped)",
          (*M2T, "--input", "smiles.jsonl"), 0, outcome=_stdout_lines),
        c("translate: inputs", "JSONL with ChEBI's `SMILES` key (every row was \"empty input\")",
          (*M2T, "--input", "chebi.jsonl"), 0, outcome=_stdout_lines),
        c("translate: inputs", "a TSV without the `description` column (translated as plain text)",
          (*T2M, "--input", "no_description.tsv"), 2),
        c("translate: inputs", "a TSV without a header (translated as plain text, tabs and all)",
          (*T2M, "--input", "headless.tsv"), 2),
        c("translate: inputs", "`--format tsv` for a file with no header naming the input column",
          (*T2M, "--format", "tsv", "--input", "smiles.txt"), 2),
        c("translate: inputs", "plain text starting with a BOM (kept in row 1's input)",
          (*M2T, "--input", "bom.txt"), 0, outcome=_stdout_lines),
        c("translate: inputs", "a TSV row with too few fields (skipped: outputs misaligned)",
          (*M2T, "--input", "short_row.tsv"), 0, outcome=_stdout_lines),
        c("translate: inputs", "a broken JSONL line (a traceback)",
          (*M2T, "--input", "broken.jsonl"), 0, outcome=_stdout_lines),
        c("translate: inputs", "a TSV input written to stdout (one column, not the predictions TSV)",
          (*M2T, "--input", "pairs.tsv"), 0, outcome=_stdout_lines),
        c("translate: inputs", "a missing `--input` (a traceback)", (*M2T, "--input", "nope.txt"), 2),
        c("translate: inputs", "a binary `--input` (a traceback)", (*M2T, "--input", "binary.bin"), 2),
        c("translate: inputs", "an `--input` that is not UTF-8", (*M2T, "--input", "latin1.txt"), 2),
        c("translate: inputs", "an `--input` that is a folder", (*M2T, "--input", "empty"), 2),
        c("translate: inputs", "TEXT arguments and `--input` together", (*M2T, "CCO", "--input", "smiles.txt"), 2),
        c("translate: inputs", "nothing to translate", M2T, 2),
        # ---- translate: options, checked before the model loads
        c("translate: options", "`--num-beams 0` (ZeroDivisionError inside transformers)",
          (*M2T, "--num-beams", "0", "CCO"), 2),
        c("translate: options", "`--num-beams -1`", (*M2T, "--num-beams", "-1", "CCO"), 2),
        c("translate: options", "`--max-new-tokens 0`", ("translate", "--task", "mol2text", "--max-new-tokens", "0",
                                                        "CCO"), 2),
        c("translate: options", "`--top-p 1.5`", (*M2T, "--sample", "--top-p", "1.5", "CCO"), 2),
        c("translate: options", "`--n-best` above `--num-beams`", (*M2T, "--system", "model", "--n-best", "3", "CCO"), 2),
        c("translate: options", "`--knn-k` without a store", (*M2T, "--knn-k", "4", "CCO"), 2),
        c("translate: options", "`--mbr` for text2mol", (*T2M, "--mbr", "chrf", "ethanol"), 2),
        c("translate: options", "`--jobs 0`", (*M2T, "--jobs", "0", "CCO"), 2),
        c("translate: options", "a `--model` that is not a checkpoint (a traceback)",
          (*M2T, "--model", "empty", "CCO"), 2),
        c("translate: options", "a `--model` that does not exist", (*M2T, "--model", "none", "CCO"), 2),
        # ---- translate: outputs
        c("translate: outputs", "an existing `--output` (overwritten silently)",
          (*M2T, "--input", "smiles.txt", "--output", "old.txt"), 2),
        c("translate: outputs", "`--output` equal to `--input` (the input replaced)",
          (*M2T, "--input", "pairs.tsv", "--output", "pairs.tsv"), 2),
        c("translate: outputs", "an `--output` that is a folder (failed after the whole translation)",
          (*M2T, "--input", "smiles.txt", "--output", "empty"), 2),
        c("translate: outputs", "an `--output` under a file (failed after the whole translation)",
          (*M2T, "--input", "smiles.txt", "--output", "old.txt/out.txt"), 2),
        c("translate: outputs", "Ctrl-C during a translation (a long traceback, every finished row lost)",
          RESUMABLE, 130, interrupt=_partial_rows(2), env=SLOW_CHUNKS, outcome=_kept),
        c("translate: outputs", "... then the same command again", RESUMABLE, 0, prepare=_interrupted_translation,
          outcome=_file_lines("pred.tsv")),
        c("translate: outputs", "Ctrl-C with the output on stdout", (*M2T, "--input", "resume.tsv"), 130,
          interrupt=_after(12), env=SLOW_CHUNKS),
        c("translate: outputs", "text2mol with a length budget too small to close what it opened (an unclosed "
          "bracket atom or ring bond)", ("translate", "--task", "text2mol", "--max-new-tokens", "1",
                                         "The molecule is ethanol."), 0, outcome=_stdout_lines),
        # ---- datastores
        c("datastores", "a store of the other task (used with whole-store retrieval, outputs changed)",
          (*M2T, "--knn", "text2mol_store", "CCO"), 2),
        c("datastores", "... with `--knn-pairs 8`", (*M2T, "--knn", "text2mol_store", "--knn-pairs", "8", "CCO"), 2),
        c("datastores", "a store with a truncated file (\"mmap length is greater than file size\")",
          (*M2T, "--knn", "truncated_store", "CCO"), 2),
        c("datastores", "a store with a missing file", (*M2T, "--knn", "incomplete_store", "CCO"), 2),
        c("datastores", "a folder that is no store", (*M2T, "--knn", "empty", "CCO"), 2),
        c("datastores", "`datastore build` into an existing `--out` (a traceback)",
          ("datastore", "build", "--model", MODEL, "--task", "mol2text", "--out", "existing_store"), 2),
        c("datastores", "`datastore build` from a `--model` that is no checkpoint",
          ("datastore", "build", "--model", "empty", "--task", "mol2text", "--out", "new_store"), 2),
        c("datastores", "`datastore build --fraction 0`",
          ("datastore", "build", "--model", MODEL, "--task", "mol2text", "--out", "new_store", "--fraction", "0"), 2),
        c("datastores", "Ctrl-C during `datastore build`", BUILD, 130, interrupt=_chunks(2), needs_chebi=True),
        c("datastores", "... then the same command again (it resumed without saying so)", BUILD, 0,
          prepare=_interrupted_build, needs_chebi=True, outcome=_stdout_text),
        c("datastores", "a rerun after a damaged chunk (failed the same way forever; `--no-resume` never "
          "suggested)", BUILD, 1, prepare=_damaged_build, needs_chebi=True),
        # ---- tune, bench, datastore inspect: checked before the model loads
        c("tune", "`--num-beams 0`", (*TUNE, "--num-beams", "0"), 2),
        c("tune", "`--knn-lambdas` out of [0, 1]", (*TUNE, "--knn-lambdas", "0.1,1.5"), 2),
        c("tune", "`--ks` with a word in it", (*TUNE, "--ks", "4,x"), 2),
        c("tune", "`--temperatures` with a 0", (*TUNE, "--temperatures", "1,0"), 2),
        c("tune", "`--dev-rows 0`", (*TUNE, "--dev-rows", "0"), 2),
        c("tune", "a missing `--model`", ("tune", "--store", "store", "--model", "none"), 2),
        c("tune", "a `--store` that is no store", ("tune", "--store", "empty", "--model", MODEL), 2),
        c("tune", "a missing `--data`", (*TUNE, "--data", "none"), 2),
        c("bench", "`--beams` with a word in it", ("bench", "--beams", "1,x"), 2),
        c("bench", "`--limit 0` (every test row used)", ("bench", "--limit", "0"), 2),
        c("bench", "an unknown task in `--tasks`", ("bench", "--tasks", "text2mol,mol2txt"), 2),
        c("bench", "`--fractions` above 1", ("bench", "--fractions", "0.5,2"), 2),
        c("bench", "`--scaling-beam` not among `--beams`", ("bench", "--scaling-beam", "3"), 2),
        c("bench", "a missing `--model` (the output folder made first)", ("bench", "--model", "none"), 2),
        c("bench", "an `--out` that is a file", ("bench", "--out", "old.txt"), 2),
        c("datastore inspect", "`--k 0`", (*INSPECT, "--k", "0", "CCO"), 2),
        c("datastore inspect", "`--knn-lambda 1.5`", (*INSPECT, "--knn-lambda", "1.5", "CCO"), 2),
        c("datastore inspect", "`--task` other than the store's", (*INSPECT, "--task", "text2mol", "ethanol"), 2),
        c("datastore inspect", "a `--store` that is no store",
          ("datastore", "inspect", "--store", "empty", "--model", MODEL, "CCO"), 2),
        c("datastore inspect", "a `--json` that is a folder", (*INSPECT, "--json", "empty", "CCO"), 2),
        # ---- eval
        c("eval", "a mol2text file with `--task text2mol` (scored, BLEU-4 0.77)",
          ("eval", "captions.tsv", "--task", "text2mol", "--no-fcd"), 2),
        c("eval", "a duplicated header line (scored as a data row)", ("eval", "joined.tsv", "--no-fcd"), 2),
        c("eval", "a malformed row (several lines)", ("eval", "one_bad.tsv", "--no-fcd"), 2),
        c("eval", "twenty malformed rows", ("eval", "many_bad.tsv", "--no-fcd"), 2),
        c("eval", "a predictions file that is not UTF-8", ("eval", "latin1.tsv", "--no-fcd"), 2),
        c("eval", "a header alone", ("eval", "header_only.tsv", "--no-fcd"), 2),
        c("eval", "a missing predictions file", ("eval", "nope.tsv"), 2),
        c("eval", "a folder", ("eval", "empty"), 2),
        c("eval", "a `--json` under a file (failed after scoring)", ("eval", "captions.tsv", "--json", "old.txt/s.json"), 2),
        c("eval", "a missing caption tokenizer (several lines)",
          ("eval", "captions.tsv", "--text-tokenizer", "none", "--no-cache"), 2),
    ]


# ------------------------------------------------------------------------------------------ table


@dataclass
class Result:
    case: Case
    status: int
    lines: list[str]
    unchanged: bool | None
    note: str


def run_case(case: Case, template: Path) -> Result:
    with tempfile.TemporaryDirectory(prefix="t2m-errors-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(template, work)
        if case.prepare is not None:
            case.prepare(work)
        before = snapshot(work)
        status, out, err = run(case.argv, work, case.env, case.interrupt)
        if status != case.expect:
            raise SystemExit(f"t2m {' '.join(case.argv)}: exit {status}, expected {case.expect}\n{err}")
        lines = [readable(line, work) for line in visible_lines(err)]
        unchanged = snapshot(work) == before if status == 2 else None
        note = readable(case.outcome(work, out), work) if case.outcome else ""
        return Result(case, status, lines, unchanged, note)


def _cell(text: str) -> str:
    """``text`` for a markdown table cell."""
    return html.escape(text, quote=False).replace("|", "&#124;").replace("\n", " ")


def _code(text: str) -> str:
    """``text`` as code in a table cell (HTML, so that backticks and bars inside it stay as they are)."""
    return f"<code>{_cell(text)}</code>"


def _command(argv: tuple[str, ...]) -> str:
    shown = " ".join(a if a and not re.search(r"[\s\"'|<>;&]", a) else json.dumps(a) for a in argv)
    return _code(f"t2m {shown}".replace(MODEL, "t2m/default_model"))


def markdown(results: list[Result], skipped: list[Case]) -> str:
    out = [
        "# Error messages",
        "",
        "Every bad input found in issue 18, run through the command line as a user runs it, and what the user "
        "now sees: the exit status (2: a usage error, refused before any model loads; 1: a failure while "
        "working; 130: interrupted; 0: done, with any row that could not be translated flagged in place) and "
        "the lines on stderr (progress bars left out). \"Files\" says whether a refused command left every file "
        "as it was. Add `--debug` (or set `T2M_DEBUG=1`) to see the Python traceback of an error.",
        "",
        "Generated by `python tests/benchmarks/error_messages.py` (paths are relative to the folder the command "
        "ran in; `t2m/default_model` is the shipped model, named explicitly where an option needs a "
        "checkpoint; translations use `--max-new-tokens 4` to be quick; transformers' own warnings are left "
        "out; in italics: what the command wrote). Do not edit by hand: rerun it.",
        "",
    ]
    group = None
    for result in results:
        if result.case.group != group:
            group = result.case.group
            out += ["", f"## {group}", "", "| Case (issue 18) | Command | Exit | What the user sees | Files |",
                    "|---|---|---|---|---|"]
        seen = "<br>".join(_code(line) for line in result.lines) or "(nothing)"
        if result.note:
            seen += f"<br>*{_cell(result.note)}*"
        files = "" if result.unchanged is None else "unchanged" if result.unchanged else "**changed**"
        out.append(f"| {result.case.what} | {_command(result.case.argv)} | {result.status} | {seen} | {files} |")
    if skipped:
        out += ["", "Left out (no ChEBI-20 at `$T2M_SHARED_DATA` when this page was generated): "
                + "; ".join(case.what for case in skipped) + "."]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "errors.md", help="the page to write")
    parser.add_argument("--only", default=None, help="run only the groups whose name holds this word; print, do "
                                                     "not write")
    args = parser.parse_args()
    selected = [case for case in cases() if args.only is None or args.only in case.group]
    have_chebi = (SHARED / "chebi20" / "validation.txt").is_file()
    skipped = [case for case in selected if case.needs_chebi and not have_chebi]
    results = []
    with tempfile.TemporaryDirectory(prefix="t2m-errors-template-") as tmp:
        template = Path(tmp)
        make_workspace(template)
        for case in selected:
            if case in skipped:
                continue
            started = time.perf_counter()
            result = run_case(case, template)
            results.append(result)
            print(f"[{time.perf_counter() - started:5.1f} s] exit {result.status}: t2m {' '.join(case.argv)}",
                  file=sys.stderr, flush=True)
    page = markdown(results, skipped)
    if args.only is not None:
        print(page)
        return 0
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(results)} cases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
