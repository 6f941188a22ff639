"""Issue 18: property-based fuzzing of the input readers and of ``t2m translate``'s input handling.

Random bytes, and random TSV/JSONL files with missing, extra, empty and non-ASCII fields, BOMs and CRLFs:
the readers raise nothing but their documented errors, and ``t2m translate`` (run in this process through
``t2m.cli.main``, with a stand-in translator so that no model is needed) never fails with a traceback (exit 0,
or 2 with one line) and always writes one output row per input row, in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2m.cli import main
from t2m.errors import OptionError
from t2m.data import DataFormatError, read_jsonl_records, read_records, read_tsv_records
from t2m.inputs import read_inputs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the readers' bad-row warnings
FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

field_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
                     max_size=12)
header_names = st.sampled_from(["CID", "SMILES", "description", "smiles", "Description", "ground truth", "extra", ""])


@st.composite
def tsv_files(draw) -> bytes:
    header = draw(st.lists(header_names, min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(field_text, min_size=0, max_size=len(header) + 2), max_size=8))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(["\t".join(header)] + ["\t".join(r) for r in rows]) + draw(st.sampled_from(["", newline]))
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text.encode("utf-8")


json_values = st.one_of(st.none(), st.booleans(), st.integers(), field_text, st.lists(st.integers(), max_size=2))


@st.composite
def jsonl_files(draw) -> bytes:
    keys = st.sampled_from(["input", "smiles", "SMILES", "description", "Description", "cid", "CID", "other"])
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["object", "object", "object", "broken", "list", "blank"]))
        if kind == "object":
            lines.append(json.dumps(draw(st.dictionaries(keys, json_values, max_size=4)),
                                    ensure_ascii=draw(st.booleans())))
        elif kind == "broken":
            lines.append(draw(st.sampled_from(['{"input": ', "{bad", "[", "1" * 5000, "[" * 3000])))
        elif kind == "list":
            lines.append("[1, 2]")
        else:
            lines.append("")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if lines else "")
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text.encode("utf-8")


any_file = st.one_of(st.binary(max_size=200), tsv_files(), jsonl_files(),
                     st.text(max_size=80).map(lambda t: t.encode("utf-8")))


def expected_rows(data: bytes, kind: str) -> int:
    """Rows an input of ``data`` read as ``kind`` has: its lines (split on LF), trailing blank ones not
    counted, the header not counted for TSV."""
    lines = data.decode("utf-8-sig").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if kind == "tsv":
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        return 0 if first is None else len(lines) - first - 1
    return len(lines)


@FUZZ
@given(data=any_file, suffix=st.sampled_from([".tsv", ".jsonl", ".txt"]))
def test_data_readers_raise_only_their_own_errors(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"pairs{suffix}"
    path.write_bytes(data)
    for read in (read_tsv_records, read_jsonl_records, read_records):
        try:
            records = read(path)
        except DataFormatError:
            continue
        for record in records:
            assert isinstance(record["cid"], str) and isinstance(record["smiles"], str)


@FUZZ
@given(data=any_file, task=st.sampled_from(["text2mol", "mol2text"]),
       format=st.sampled_from(["auto", "auto", "text", "tsv", "jsonl"]))
def test_translate_reader_reads_every_row_or_refuses_the_file(tmp_path_factory, data, task, format):
    path = tmp_path_factory.mktemp("fuzz") / "input.txt"
    path.write_bytes(data)
    try:
        inputs = read_inputs(path, task, format)
    except OptionError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert len(inputs.rows) == expected_rows(data, inputs.kind)
    assert [row.line for row in inputs.rows] == sorted(row.line for row in inputs.rows)
    for row in inputs.rows:
        assert isinstance(row.source, str) and (row.problem is None or row.source == "")


class EchoTranslator:
    """Stands in for the model: row i's output says which input it came from, with a tab and a line
    break in it to try the writers."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls()

    def translate(self, inputs, *options, **keywords):
        from t2m.decoding.translator import FLAG_EMPTY, Translation

        return [Translation(input=text, output=f"out\t{text}\nend" if text.strip() else "",
                            candidates=[f"out {text}"], flags=[] if text.strip() else [FLAG_EMPTY])
                for text in inputs]


@pytest.fixture
def echo(monkeypatch):
    import t2m.translate_job

    monkeypatch.setattr(t2m.translate_job, "Translator", EchoTranslator)  # the name translate_job decodes with


@FUZZ
@given(data=st.one_of(tsv_files(), jsonl_files(), st.text(max_size=80).map(lambda t: t.encode("utf-8")),
                      st.binary(max_size=60)),
       task=st.sampled_from(["text2mol", "mol2text"]), n_best=st.booleans())
def test_translate_never_fails_and_keeps_rows_aligned(tmp_path_factory, echo, data, task, n_best, capsys):
    folder = tmp_path_factory.mktemp("fuzz")
    source = folder / "input.data"
    source.write_bytes(data)
    output = folder / "out.data"
    code = main(["translate", "--task", task, "--system", "model", "--input", str(source), "--output", str(output),
                 *(["--n-best", "1"] if n_best else [])])
    err = capsys.readouterr().err
    assert source.read_bytes() == data
    assert "Traceback" not in err
    if code == 2:
        assert not output.exists() and not Path(str(output) + ".partial").exists()
        assert len([line for line in err.splitlines() if "error:" in line]) == 1
        return
    assert code == 0, err
    assert not Path(str(output) + ".partial").exists()
    inputs = read_inputs(source, task)
    lines = output.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    if inputs.kind == "tsv":
        assert lines[0].split("\t")[1:] == ["ground truth", "output"]
        lines = lines[1:]
    assert len(lines) == len(inputs.rows)
    for line, row in zip(lines, inputs.rows):
        if inputs.kind == "jsonl":
            obj = json.loads(line)
            assert obj["input"] == row.source and (obj["output"] == "") == (not row.source.strip())
            assert (row.problem is None) or obj["flags"] == [row.problem]
        elif inputs.kind == "tsv":
            assert len(line.split("\t")) == 3
        elif row.source.strip() and not n_best:
            assert line.startswith("out ")
