"""Issue 18: an interrupted ``t2m translate`` keeps its finished rows and resumes; inputs never misalign.

Run as a user runs it (``python -m t2m`` in a subprocess) with the shipped model, greedy, a few new tokens.
``T2M_TRANSLATE_CHUNK`` makes the rows kept a few at a time and the test hook ``_T2M_TEST_CHUNK_DELAY``
leaves time to press Ctrl-C (SIGINT) between two chunks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMILES = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "CCCl", "C=CC", "OCC(O)CO", "CC(C)O", "NCC(=O)O", "CCOC(C)=O",
          "C1CCCCC1", "CS(C)=O"]


def command(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--input", str(src), "--output", str(out),
            "--max-new-tokens", "6", *extra]


def environ(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "T2M_TRANSLATE_CHUNK": "2", "OMP_NUM_THREADS": "1", **extra}
    env.pop("T2M_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("resume")
    src = folder / "in.tsv"
    src.write_text("SMILES\tdescription\n" + "".join(f"{s}\tThe molecule {i}.\n" for i, s in enumerate(SMILES)),
                   encoding="utf-8")
    out = folder / "whole.tsv"
    result = subprocess.run(command(src, out), env=environ(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return src, out.read_text(encoding="utf-8")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_keeps_the_finished_rows_and_the_rerun_finishes_the_same_file(uninterrupted, tmp_path, jobs):
    src, whole = uninterrupted
    out = tmp_path / "pred.tsv"
    partial = tmp_path / "pred.tsv.partial"
    # SIGINT as a terminal delivers it, even when the tests run in a background job (whose children inherit an
    # ignored SIGINT: Python then installs no KeyboardInterrupt handler)
    run = subprocess.Popen(command(src, out, "--jobs", jobs), env=environ(_T2M_TEST_CHUNK_DELAY="3"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (partial.is_file() and partial.read_text(encoding="utf-8").count("\n") >= 3):  # header + 2 rows
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    kept = partial.read_text(encoding="utf-8").count("\n") - 1
    assert 2 <= kept < len(SMILES)
    assert last == (f"t2m translate: interrupted: {kept} of {len(SMILES)} rows kept in {partial}; rerun the same "
                    "command to resume")
    assert not out.exists()

    again = subprocess.run(command(src, out, "--jobs", jobs), env=environ(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {kept} of {len(SMILES)} rows were done in an earlier run" in again.stderr
    assert out.read_text(encoding="utf-8") == whole
    assert not partial.exists()


def test_a_killed_run_resumes_and_other_options_are_refused(uninterrupted, tmp_path):
    """SIGKILL (no chance to say anything): the rows synced so far are kept. A rerun with other options
    is refused (the kept rows would not match) and --no-resume starts over."""
    src, whole = uninterrupted
    out = tmp_path / "pred.tsv"
    partial = tmp_path / "pred.tsv.partial"
    run = subprocess.Popen(command(src, out), env=environ(_T2M_TEST_CHUNK_DELAY="3"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (partial.is_file() and partial.read_text(encoding="utf-8").count("\n") >= 3):
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    run.kill()
    run.wait()
    with partial.open("a", encoding="utf-8") as handle:
        handle.write('{"row": 11, "result": {"inp')  # a line cut short by the kill
    kept = partial.read_bytes()

    other = subprocess.run(command(src, out, "--max-new-tokens", "7"), env=environ(), capture_output=True,
                           text=True, timeout=600)
    assert other.returncode == 2 and partial.read_bytes() == kept
    assert other.stderr.strip().splitlines()[-1].startswith(f"t2m translate: error: {partial} keeps ")
    assert "(different options (--max-new-tokens 7))" in other.stderr and "--no-resume" in other.stderr

    again = subprocess.run(command(src, out), env=environ(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert out.read_text(encoding="utf-8") == whole and not partial.exists()


def test_bad_rows_stay_in_place_and_stdout_gets_the_predictions_file(tmp_path):
    """A TSV row with too few fields, JSONL with ``smiles``/``SMILES`` keys and no ``cid``, broken JSON, a BOM
    and CRLFs: one output per input row, flagged where the row could not be read."""
    tsv = tmp_path / "in.tsv"
    tsv.write_bytes(b"\xef\xbb\xbfSMILES\tdescription\r\nCCO\tethanol\r\nCCN\r\n\r\nc1ccccc1O\tphenol\r\n")
    result = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--input", str(tsv),
                             "--max-new-tokens", "4"], env=environ(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "SMILES\tground truth\toutput" and len(lines) == 5
    assert [line.split("\t")[:2] for line in lines[1:]] == [["CCO", "ethanol"], ["", ""], ["", ""],
                                                            ["c1ccccc1O", "phenol"]]
    assert lines[2].split("\t")[2] == "" and lines[1].split("\t")[2] and lines[4].split("\t")[2]
    assert f"row 2: 1 tab-separated fields, expected 2 (smiles, description) ({tsv}:3)" in result.stderr
    assert f"row 3: empty input ({tsv}:4)" in result.stderr
    assert "t2m translate: 2 of 4 rows flagged (listed above)" in result.stderr

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"smiles": "CCO"}\n{"SMILES": "CCN", "description": "x"}\n{broken\n{"cid": 3}\n',
                     encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--input", str(jsonl),
                             "--output", str(out), "--max-new-tokens", "4"], env=environ(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["input"] for r in rows] == ["CCO", "CCN", "", ""]
    assert rows[0]["output"] and rows[1]["output"] and rows[0]["flags"] == [] and rows[1]["flags"] == []
    assert rows[2]["flags"][0].startswith("invalid JSON") and rows[3]["cid"] == "3"
    assert rows[3]["flags"] == ["no 'input' or 'smiles' key (keys: 'cid')"]
