"""Issue 18: every bad input gets a one-line answer and no file is lost -- run as a user runs it.

Each case runs ``python -m t2m ...`` in a subprocess and checks the exit status (2: a usage error found
before any work, 1: a failure), the one line on stderr naming the file, row or option and the fix, and that
no file was changed. All of these are refused before a model loads, so each takes about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHEBI_HEADER = "CID\tSMILES\tdescription"


def t2m(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environ.pop("T2M_DEBUG", None) if not env or "T2M_DEBUG" not in env else None
    return subprocess.run([sys.executable, "-m", "t2m", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or REPO, timeout=300)


def one_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The single stderr line of a refused command, checked for its exit status and its words."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "pairs.tsv").write_text(f"{CHEBI_HEADER}\n1\tCCO\tThe molecule is ethanol.\n"
                                        "2\tCCN\tThe molecule is ethylamine.\n", encoding="utf-8")
    (tmp_path / "smiles.txt").write_text("CCO\nCCN\n", encoding="utf-8")
    (tmp_path / "old.txt").write_text("keep me\n", encoding="utf-8")
    (tmp_path / "binary.bin").write_bytes(b"\x7fELF\x00\x01\x02\xff\xfe")
    return tmp_path


TRANSLATE = ("translate", "--task", "mol2text", "--max-new-tokens", "8")


@pytest.mark.parametrize("option, value, words", [
    ("--num-beams", "0", "--num-beams 0: must be 1 or more"),
    ("--num-beams", "-1", "--num-beams -1: must be 1 or more"),
    ("--max-new-tokens", "0", "--max-new-tokens 0: must be 1 or more"),
    ("--jobs", "0", "--jobs 0: must be 1 or more"),
    ("--top-p", "1.5", "--top-p 1.5: must be in (0, 1]"),
    ("--knn-k", "4", "--knn-k 4 sets retrieval: give the datastore with --knn STORE"),
    ("--knn-lambda", "1.5", "--knn-lambda 1.5: must be in [0, 1]"),
    ("--top-k", "-1", "--top-k -1: must be 0 or more"),
    ("--n-best", "0", "--n-best 0: must be 1 or more"),
])
def test_bad_options_are_refused_before_the_model_loads(files, option, value, words):
    before = snapshot(files)
    one_line(t2m(*TRANSLATE, "--input", str(files / "smiles.txt"), option, value), 2, "t2m translate: error:", words)
    assert snapshot(files) == before


def test_more_candidates_than_beams_are_refused_for_the_model(files):
    """--n-best N needs N beams from the model; retrieval (the shipped model's default system) answers with
    the next pairs' targets, so only --system model is refused, before the model loads."""
    before = snapshot(files)
    one_line(t2m(*TRANSLATE, "--system", "model", "--input", str(files / "smiles.txt"), "--n-best", "3"), 2,
             "t2m translate: error:", "--n-best 3 needs --num-beams 3 or more")
    assert snapshot(files) == before


def test_mbr_for_text2mol_and_inputs_given_twice_or_not_at_all(files):
    one_line(t2m("translate", "--task", "text2mol", "--mbr", "chrf", "ethanol"), 2, "--mbr chrf", "mol2text")
    one_line(t2m(*TRANSLATE, "CCO", "--input", str(files / "smiles.txt")), 2, "either TEXT arguments or --input")
    one_line(t2m(*TRANSLATE), 2, "nothing to translate")


def test_missing_binary_and_folder_inputs(files):
    before = snapshot(files)
    one_line(t2m(*TRANSLATE, "--input", str(files / "nope.txt")), 2, f"--input {files / 'nope.txt'}: no such file")
    one_line(t2m(*TRANSLATE, "--input", str(files / "binary.bin")), 2, "a binary file, not text", "UTF-8")
    one_line(t2m(*TRANSLATE, "--input", str(files)), 2, "a folder, not a file")
    latin = files / "latin1.txt"
    latin.write_bytes("CCO\ncaf\xe9\n".encode("latin-1"))
    one_line(t2m(*TRANSLATE, "--input", str(latin)), 2, f"{latin}:2: not UTF-8 text", "save the file as UTF-8")
    assert snapshot(files) == {**before, "latin1.txt": latin.read_bytes()}


def test_a_model_that_is_not_a_checkpoint(files):
    one_line(t2m(*TRANSLATE, "--model", str(files), "CCO"), 2, f"--model {files}: not a checkpoint folder",
             "(no config.json)", "leave --model DIR out")
    one_line(t2m(*TRANSLATE, "--model", str(files / "none"), "CCO"), 2, "no such folder")


def test_tsv_without_the_input_column_or_without_a_header_is_refused_not_guessed(files):
    no_description = files / "no_description.tsv"
    no_description.write_text("CID\tSMILES\n1\tCCO\n", encoding="utf-8")
    one_line(t2m("translate", "--task", "text2mol", "--input", str(no_description)), 2,
             f"{no_description}:1: a TSV header (CID, SMILES) without a 'description' column",
             "--format text")
    headless = files / "headless.tsv"
    headless.write_text("1\tCCO\tThe molecule is ethanol.\n", encoding="utf-8")
    one_line(t2m("translate", "--task", "text2mol", "--input", str(headless)), 2,
             f"{headless}:1: tab-separated, but line 1 is no header", "--format text")
    one_line(t2m("translate", "--task", "text2mol", "--format", "tsv", "--input", str(files / "smiles.txt")), 2,
             "has no 'description' column")


def test_output_checks_lose_no_file(files):
    before = snapshot(files)
    pairs = files / "pairs.tsv"
    one_line(t2m(*TRANSLATE, "--input", str(pairs), "--output", str(pairs)), 2,
             f"--output {pairs} is also --input {pairs}")
    one_line(t2m(*TRANSLATE, "--input", str(pairs), "--output", str(files / "old.txt")), 2,
             f"--output {files / 'old.txt'} already exists; pass --overwrite")
    one_line(t2m(*TRANSLATE, "--input", str(pairs), "--output", str(files)), 2, "a folder; give a file path")
    one_line(t2m(*TRANSLATE, "--input", str(pairs), "--output", str(files / "old.txt" / "out.tsv")), 2,
             "is a file, not a folder")
    assert snapshot(files) == before  # and no partial file was left behind


def test_debug_shows_the_traceback(files):
    for result in (t2m("--debug", *TRANSLATE, "--num-beams", "0", "CCO"),
                   t2m(*TRANSLATE, "--num-beams", "0", "CCO", "--debug"),
                   t2m(*TRANSLATE, "--num-beams", "0", "CCO", env={"T2M_DEBUG": "1"})):
        assert result.returncode == 1 and "Traceback" in result.stderr and "UsageError" in result.stderr


# ------------------------------------------------------------------------------------ datastores


def fake_store(folder: Path, task: str, count: int = 4, dim: int = 8) -> Path:
    """A datastore folder with consistent arrays and datastore.json (no index), enough to be loaded."""
    from datastore.store import ARRAY_DTYPES, ARRAY_FILES, FORMAT_NAME, FORMAT_VERSION

    folder.mkdir()
    arrays = {}
    for name, file in ARRAY_FILES.items():
        shape = [count, dim] if name == "keys" else [count]
        np.save(folder / file, np.zeros(shape, dtype=ARRAY_DTYPES[name]))
        arrays[name] = {"file": file, "dtype": ARRAY_DTYPES[name], "shape": shape}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "count": count, "dim": dim, "arrays": arrays,
            "key": {"layer": "lm_head_input"}, "task": task, "model": {"fingerprint": "x"},
            "tokenizer": {"fingerprint": "y", "vocab_size": 1}, "knn": {"k": 4, "lambda": 0.3, "temperature": 10.0},
            "index": {"factory": "none"}}
    (folder / "datastore.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_a_store_of_the_other_task_is_refused_for_every_retrieval_scope(tmp_path):
    store = fake_store(tmp_path / "text2mol_store", "text2mol")
    for scope in ((), ("--knn-pairs", "0"), ("--knn-pairs", "8")):
        one_line(t2m(*TRANSLATE, "--knn", str(store), *scope, "CCO"), 2,
                 f"--knn {store} is a text2mol datastore", "cannot serve a mol2text translation",
                 "t2m datastore build --task mol2text")


def test_a_truncated_or_missing_store_file_is_named(tmp_path):
    store = fake_store(tmp_path / "store", "mol2text")
    keys = store / "keys.npy"
    keys.write_bytes(keys.read_bytes()[:-16])
    one_line(t2m(*TRANSLATE, "--knn", str(store), "CCO"), 2, f"{keys}:", "the file is truncated",
             "datastore.json says [4, 8] float16")
    (store / "rows.npy").unlink()
    keys.unlink()
    one_line(t2m(*TRANSLATE, "--knn", str(store), "CCO"), 2, f"{keys} is missing", "rebuild")
    one_line(t2m(*TRANSLATE, "--knn", str(tmp_path), "CCO"), 2, "is not a finished datastore")


# ------------------------------------------------------------------------------------ eval


MOL2TEXT_ROWS = ["CCO\tThe molecule is ethanol.\tThe molecule is an alcohol.",
                 "CCN\tThe molecule is an amine.\tThe molecule is ethylamine.",
                 "CCC\tThe molecule is propane.\tThe molecule is an alkane."]


def test_eval_refuses_a_file_that_contradicts_the_task_unless_forced(tmp_path):
    captions = tmp_path / "captions.tsv"
    captions.write_text("SMILES\tground truth\toutput\n" + "\n".join(MOL2TEXT_ROWS) + "\n", encoding="utf-8")
    one_line(t2m("eval", str(captions), "--task", "text2mol", "--no-fcd"), 2,
             f"t2m eval: error: {captions}: --task text2mol, but its header says mol2text", "--force")
    headless = tmp_path / "headless.tsv"
    headless.write_text("input\tground truth\toutput\n" + "\n".join(MOL2TEXT_ROWS) + "\n", encoding="utf-8")
    one_line(t2m("eval", str(headless), "--task", "text2mol", "--no-fcd"), 2,
             "3 of its first 3 ground truths hold spaces, as captions do", "--task mol2text", "--force")
    forced = t2m("eval", str(headless), "--task", "text2mol", "--no-fcd", "--force", "--no-cache")
    assert forced.returncode == 0, forced.stderr


def test_eval_refuses_a_repeated_header_line(tmp_path):
    joined = tmp_path / "joined.tsv"
    header = "SMILES\tground truth\toutput"
    text = f"{header}\n{MOL2TEXT_ROWS[0]}\n{header}\n{MOL2TEXT_ROWS[1]}\n"
    joined.write_text(text, encoding="utf-8")
    result = t2m("eval", str(joined), "--no-fcd")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{joined}:3: the header line again" in result.stderr and "delete this line" in result.stderr
    assert joined.read_text(encoding="utf-8") == text


# ------------------------------------------------------------------------------------ help


def _actions(parser, path=()):
    """(subcommand path, parser, action) for every option and positional argument under ``parser``."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif action.dest not in ("help", "version"):
            yield path, parser, action


def _all_commands() -> list[str]:
    from t2m.cli import COMMANDS

    return sorted(COMMANDS)


@pytest.mark.parametrize("command", _all_commands())
def test_every_option_has_help_and_shows_its_default(command):
    """Every subcommand's every option and argument (sub-actions too: datastore build/inspect, data info/...)
    has help, and the help shows the default where there is one -- 0 included."""
    from t2m.cli import build_parser, shows_default

    parser = build_parser(command)
    seen = 0
    for path, sub, action in _actions(parser):
        seen += 1
        name = " ".join(path) + " " + (action.option_strings[0] if action.option_strings else action.dest)
        assert action.help and action.help.strip(), f"{name} has no help"
        text = sub.formatter_class("x")._get_help_string(action)
        if shows_default(action) and not action.required:
            assert "default" in text.lower(), f"{name}: {text}"
        assert "DEFAULT_FACTORY" not in text and "None ->" not in text, text
        assert not (action.metavar or "").endswith("_"), f"{name}: metavar {action.metavar}"
    assert seen > 3


def test_help_texts():
    result = t2m("--help")
    assert result.returncode == 0 and "``" not in result.stdout and "The t2m command line" in result.stdout
    for action in ("build", "inspect"):
        text = t2m("datastore", action, "--help").stdout
        assert text.split("\n\n")[1].strip(), text  # a description under the usage
    info, split = t2m("data", "info", "--help").stdout, t2m("data", "split", "--help").stdout
    assert info.split("\n\n")[1] != split.split("\n\n")[1]
    assert "(default: 256)" in t2m("translate", "--help").stdout.replace("\n", " ").replace("  ", " ")


def test_datastore_build_into_an_existing_store_or_from_no_checkpoint_is_refused_before_loading(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "datastore.json").write_text("{}")
    before = snapshot(tmp_path)
    one_line(t2m("datastore", "build", "--model", str(REPO / "t2m" / "default_model"), "--task", "mol2text",
                 "--out", str(store)), 2, str(store), "already holds a datastore", "--overwrite")
    one_line(t2m("datastore", "build", "--model", str(tmp_path), "--task", "mol2text", "--out", str(tmp_path / "new")),
             2, "not a checkpoint folder", "config.json")
    one_line(t2m("datastore", "build", "--model", str(REPO / "t2m" / "default_model"), "--task", "mol2text",
                 "--out", str(tmp_path / "new"), "--knn-lambda", "2"), 2, "--knn-lambda 2.0: must be in [0, 1]")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------- eval: one line per refusal


def test_eval_bad_rows_are_one_line_naming_file_rows_and_fix(tmp_path):
    header = "description\tground truth\toutput"
    one_bad = tmp_path / "one_bad.tsv"
    one_bad.write_text(f"{header}\nd1\tCCO\tCCO\nd2\tCCN\n", encoding="utf-8")
    one_line(t2m("eval", str(one_bad), "--no-fcd"), 2, f"t2m eval: error: {one_bad}:3: 2 tab-separated fields, "
             "expected 3", "fix this line, or pass --skip-bad-rows")
    many_bad = tmp_path / "many_bad.tsv"
    many_bad.write_text(header + "\n" + "d\tC\n" * 20 + "d\t\tC\n", encoding="utf-8")
    line = one_line(t2m("eval", str(many_bad), "--no-fcd"), 2, f"{many_bad}:2: 2 tab-separated fields",
                    f"{many_bad}:4:", "and 18 more malformed rows (lines 5, 6,", "fix those lines, or pass --skip-bad-rows")
    assert "skip_bad_rows=True" not in line  # no Python-only remedy
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"reference": "C", "output": "C", "task": "x"}\nnot json\n', encoding="utf-8")
    one_line(t2m("eval", str(bad_json), "--no-fcd"), 2, f"{bad_json}:1: unknown task 'x'", f"{bad_json}:2: invalid JSON")


def test_eval_refuses_a_folder_a_missing_or_non_utf8_file_and_a_header_alone_in_one_line(tmp_path):
    header = "description\tground truth\toutput"
    one_line(t2m("eval", str(tmp_path), "--no-fcd"), 2, f"{tmp_path}: a folder, not a predictions file")
    one_line(t2m("eval", str(tmp_path / "none.tsv"), "--no-fcd"), 2, "predictions file not found", "give the TSV")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(f"{header}\nd1\tCC\tCC\nd2\tCC\xe9\tC\n".encode("latin-1"))
    one_line(t2m("eval", str(latin), "--no-fcd"), 2, f"{latin}:3: not UTF-8 text", "save the file as UTF-8")
    alone = tmp_path / "alone.tsv"
    alone.write_text(header + "\n", encoding="utf-8")
    one_line(t2m("eval", str(alone), "--no-fcd"), 2, f"{alone}: no rows to score", "give a file with predictions")


def test_eval_refuses_an_unwritable_json_and_a_missing_tokenizer_in_one_line(tmp_path):
    captions = tmp_path / "captions.tsv"
    captions.write_text("SMILES\tground truth\toutput\n" + "\n".join(MOL2TEXT_ROWS) + "\n", encoding="utf-8")
    before = snapshot(tmp_path)
    one_line(t2m("eval", str(captions), "--json", str(captions / "scores.json")), 2,
             f"--json {captions / 'scores.json'}: {captions} is a file")
    one_line(t2m("eval", str(captions), "--text-tokenizer", str(tmp_path / "none"), "--no-cache"), 2,
             "text tokenizer not found", "--text-tokenizer DIR")
    assert snapshot(tmp_path) == before


# ------------------------------------------------- tune, bench, datastore inspect: refused before a model loads


MODEL = REPO / "t2m" / "default_model"


@pytest.mark.parametrize("option, value, words", [
    ("--num-beams", "0", "--num-beams 0: must be 1 or more (1: greedy search)"),
    ("--knn-lambdas", "0.1,1.5", "--knn-lambdas 0.1,1.5: 1.5 must be in [0, 1]"),
    ("--knn-lambdas", ",", "--knn-lambdas ',': no values; give comma-separated numbers"),
    ("--ks", "4,x", "--ks 4,x: 'x' is not a whole number"),
    ("--ks", "0,8", "--ks 0,8: 0 must be 1 or more"),
    ("--temperatures", "1,0", "--temperatures 1,0: 0 must be > 0"),
    ("--pairs", "-4", "--pairs -4: -4 must be 0 or more (0: the whole store)"),
    ("--finalists", "0", "--finalists 0: must be 1 or more"),
    ("--batch-size", "0", "--batch-size 0: must be 1 or more"),
    ("--max-new-tokens", "0", "--max-new-tokens 0: must be 1 or more"),
    ("--dev-rows", "0", "--dev-rows 0: must be 1 or more (leave it out for every dev row)"),
])
def test_tune_options_are_refused_before_the_model_loads(tmp_path, option, value, words):
    store = fake_store(tmp_path / "store", "mol2text")
    before = snapshot(tmp_path)
    one_line(t2m("tune", "--store", str(store), "--model", str(MODEL), option, value), 2, "t2m tune: error:", words)
    assert snapshot(tmp_path) == before


def test_tune_refuses_a_missing_model_and_a_folder_that_is_no_store(tmp_path):
    store = fake_store(tmp_path / "store", "mol2text")
    (tmp_path / "empty").mkdir()
    before = snapshot(tmp_path)
    one_line(t2m("tune", "--store", str(store), "--model", str(tmp_path / "none")), 2,
             f"--model {tmp_path / 'none'}: no such folder", "`t2m train`")
    one_line(t2m("tune", "--store", str(store), "--model", str(tmp_path)), 2, "not a checkpoint folder (no config.json)")
    one_line(t2m("tune", "--store", str(tmp_path / "empty"), "--model", str(MODEL)), 2,
             f"--store {tmp_path / 'empty' / 'datastore.json'} not found", "give the folder `t2m datastore build --out`")
    one_line(t2m("tune", "--store", str(store / "keys.npy"), "--model", str(MODEL)), 2, "a file, not a folder")
    one_line(t2m("tune", "--store", str(store), "--model", str(MODEL), "--data", str(tmp_path / "none")), 2,
             f"--data {tmp_path / 'none'}: no ChEBI-20 validation.txt and test.txt here")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("option, value, words", [
    ("--beams", "1,x", "--beams 1,x: 'x' is not a whole number"),
    ("--beams", "0,5", "--beams 0,5: 0 must be 1 or more"),
    ("--limit", "0", "--limit 0: must be 1 or more (leave it out for every test row)"),
    ("--limit", "-5", "--limit -5: must be 1 or more"),
    ("--dev-limit", "0", "--dev-limit 0: must be 1 or more"),
    ("--tasks", "text2mol,mol2txt", "--tasks text2mol,mol2txt: 'mol2txt' is no task"),
    ("--fractions", "0.5,2", "--fractions 0.5,2: 2 must be in (0, 1]"),
    ("--knn-lambdas", "0,-0.1", "--knn-lambdas 0,-0.1: -0.1 must be in [0, 1]"),
    ("--scaling-limit", "-1", "--scaling-limit -1: must be 0 or more (0: every test row)"),
    ("--repetition-penalty", "0", "--repetition-penalty 0.0: must be > 0 (1: off)"),
    ("--scaling-beam", "3", "--scaling-beam 3: must be one of --beams 1,5"),
    ("--max-new-tokens", "0", "--max-new-tokens 0: must be 1 or more"),
    ("--jobs", "0", "--jobs 0: must be 1 or more"),
    ("--bootstrap", "0", "--bootstrap 0: must be 1 or more"),
    ("--model", "NONE", "no such folder; give the folder `t2m train` wrote"),
    ("--data", "NONE", "no ChEBI-20 validation.txt and test.txt here"),
])
def test_bench_options_are_refused_before_the_model_loads(tmp_path, option, value, words):
    value = value.replace("NONE", str(tmp_path / "none"))
    one_line(t2m("bench", "--out", str(tmp_path / "bench"), option, value), 2, "t2m bench: error:", words)
    assert snapshot(tmp_path) == {} and not (tmp_path / "bench").exists()  # no output folder made


def test_bench_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "bench").write_text("keep me\n")
    before = snapshot(tmp_path)
    one_line(t2m("bench", "--out", str(tmp_path / "bench")), 2, f"--out {tmp_path / 'bench'}: a file, not a folder")
    one_line(t2m("bench", "--out", str(tmp_path / "bench" / "x")), 2, "is a file, not a folder")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("option, value, words", [
    ("--k", "0", "--k 0: must be 1 or more"),
    ("--knn-lambda", "1.5", "--knn-lambda 1.5: must be in [0, 1]"),
    ("--temperature", "0", "--temperature 0.0: must be > 0"),
    ("--max-new-tokens", "0", "--max-new-tokens 0: must be 1 or more"),
    ("--task", "text2mol", "is a mol2text datastore (its keys predict mol2text tokens) and cannot serve a text2mol"),
    ("--json", "FOLDER", "a folder; give a file path"),
    ("--data", "NONE", "no such file or folder"),
])
def test_datastore_inspect_options_are_refused_before_the_model_loads(tmp_path, option, value, words):
    store = fake_store(tmp_path / "store", "mol2text")
    value = value.replace("NONE", str(tmp_path / "none")).replace("FOLDER", str(tmp_path))
    before = snapshot(tmp_path)
    one_line(t2m("datastore", "inspect", "--store", str(store), "--model", str(MODEL), option, value, "CCO"), 2,
             "t2m datastore inspect: error:", words)
    assert snapshot(tmp_path) == before


def test_datastore_inspect_refuses_a_folder_that_is_no_store_and_no_checkpoint(tmp_path):
    store = fake_store(tmp_path / "store", "mol2text")
    one_line(t2m("datastore", "inspect", "--store", str(tmp_path), "--model", str(MODEL), "CCO"), 2,
             "is not a finished datastore")
    one_line(t2m("datastore", "inspect", "--store", str(store), "--model", str(store), "CCO"), 2,
             f"--model {store}: not a checkpoint folder")
    one_line(t2m("datastore", "inspect", "--store", str(store), "--model", str(MODEL), " "), 2, "INPUT is empty")


def test_no_dispatcher_name_is_shadowed_by_a_command_module():
    """Importing ``t2m.cli.<command>`` sets that attribute on the package: a function of the dispatcher
    with a command's name (e.g. ``report``) would be replaced by the module once it is imported."""
    import t2m.cli as cli

    for command in cli.COMMANDS:
        module = __import__(cli.COMMANDS[command][0], fromlist=["run"])
        assert getattr(cli, command) is module, f"t2m.cli.{command} is not the command's module"
    assert callable(cli.report_error) and callable(cli.main)
