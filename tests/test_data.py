"""The pair readers (TSV, JSONL), bad-row handling, and the ChEBI-20 settings, on real ChEBI-20 rows."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest

from t2m import data
from t2m.data import ColumnNames, DataFormatError, DataWarning

# sha256 of the benchmark dev slice's CIDs, sorted and joined by newlines: pins the slice across
# machines and versions (change only with a documented change of the setting).
DEV_SLICE_SHA256 = "6d8b937d766a7b518543770b7b78cdaf04ca17997b4652207072cfca75bc9b1f"


@pytest.fixture(scope="module")
def chebi20(shared_data: Path) -> Path:
    return shared_data / "chebi20"


@pytest.fixture(scope="module")
def test_lines(chebi20: Path) -> list[str]:
    """Raw lines of test.txt (header first), exactly as in the file."""
    return (chebi20 / "test.txt").read_text(encoding="utf-8").split("\n")[:-1]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_real_files_parse_without_warnings_and_unescape_backslashes(chebi20: Path):
    from rdkit import Chem

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = data.read_tsv_records(chebi20 / "test.txt")
        validation = data.read_tsv_records(chebi20 / "validation.txt")
    assert (len(test), len(validation)) == (3300, 3301)
    assert set(test[0]) == {"cid", "smiles", "description"}
    with_backslash = [r for r in test if "\\" in r["smiles"]]
    assert len(with_backslash) == 484
    assert sum("\\" in r["smiles"] for r in validation) == 502
    assert not any("\\\\" in r["smiles"] for r in test + validation)
    first = test[0]
    assert first["cid"] == "5354212"
    assert first["smiles"] == "C[C@]12CCC(=O)C=C1CC[C@@H]3[C@@H]2C(=O)C[C@]\\4([C@H]3CC/C4=C/C(=O)OC)C"
    assert first["description"].startswith("The molecule is a steroid ester")
    # the single backslash is a real cis/trans mark: RDKit reads a stereo double bond from it
    mol = Chem.MolFromSmiles(first["smiles"])
    assert mol is not None
    assert any(b.GetStereo() != Chem.BondStereo.STEREONONE for b in mol.GetBonds())
    assert all(Chem.MolFromSmiles(r["smiles"]) is not None for r in with_backslash[:50])


def test_escaping_round_trips(chebi20: Path, tmp_path: Path):
    rows = data.read_tsv_records(chebi20 / "test.txt")[:40]
    out = tmp_path / "copy.txt"
    data.write_records_tsv(out, rows)
    assert data.read_tsv_records(out) == rows
    original = (chebi20 / "test.txt").read_text(encoding="utf-8").split("\n")[:41]
    assert out.read_text(encoding="utf-8").split("\n")[:41] == original


def test_bad_rows_are_warned_by_line_and_skipped(test_lines: list[str], tmp_path: Path):
    header, rows = test_lines[0], test_lines[1:8]
    cid, smiles, description = rows[2].split("\t")
    lines = [
        header,
        rows[0],
        rows[1],
        f"{cid}\t{smiles}",  # line 4: description lost (2 fields)
        f"{cid}\t{smiles}\t{description}\textra",  # line 5: 4 fields
        f"{rows[3].split(chr(9))[0]}\t\t{description}",  # line 6: empty SMILES
        f"{rows[4].split(chr(9))[0]}\t{smiles}\t  ",  # line 7: blank description
        rows[5],
        rows[0],  # line 9: duplicate of line 2's CID
        rows[6],
    ]
    path = write(tmp_path / "bad.txt", lines)
    with pytest.warns(DataWarning) as caught:
        records = data.read_tsv_records(path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 5
    assert messages[0].startswith(f"{path}:4: 2 tab-separated fields, expected 3")
    assert messages[1].startswith(f"{path}:5: 4 tab-separated fields")
    assert messages[2].startswith(f"{path}:6: empty smiles")
    assert messages[3].startswith(f"{path}:7: empty description")
    assert messages[4].startswith(f"{path}:9: duplicate CID {rows[0].split(chr(9))[0]!r} (first on line 2)")
    assert all("row skipped" in m for m in messages)
    assert [r["cid"] for r in records] == [r.split("\t")[0] for r in (rows[0], rows[1], rows[5], rows[6])]

    with pytest.raises(DataFormatError, match=rf"{path}:4: 2 tab-separated fields"):
        data.read_tsv_records(path, strict=True)


def test_many_bad_rows_end_in_one_summary(test_lines: list[str], tmp_path: Path):
    lines = [test_lines[0]] + ["only-one-field"] * (data.MAX_ROW_WARNINGS + 5) + test_lines[1:3]
    path = write(tmp_path / "many.txt", lines)
    with pytest.warns(DataWarning) as caught:
        records = data.read_tsv_records(path)
    assert len(caught) == data.MAX_ROW_WARNINGS + 1
    assert f"{data.MAX_ROW_WARNINGS + 5} bad rows skipped" in str(caught[-1].message)
    assert len(records) == 2


def test_header_problems_are_errors(test_lines: list[str], tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="empty.txt:1: empty file"):
        data.read_tsv_records(empty)
    path = write(tmp_path / "noheader.txt", test_lines[1:3])
    with pytest.raises(DataFormatError, match=r"noheader.txt:1: header .* has no column 'CID', 'SMILES', 'description'"):
        data.read_tsv_records(path)


def test_configurable_columns(test_lines: list[str], tmp_path: Path):
    rows = [line.split("\t") for line in test_lines[1:4]]
    # other names, other order, an extra column; names match case-insensitively
    lines = ["Text\tsmi\tsource\tId"] + [f"{d}\t{s}\tchebi\t{c}" for c, s, d in rows]
    path = write(tmp_path / "user.tsv", lines)
    records = data.read_tsv_records(path, ColumnNames(cid="id", smiles="smi", description="text"))
    assert [r["cid"] for r in records] == [c for c, _, _ in rows]
    assert records[0]["smiles"] == rows[0][1].replace("\\\\", "\\")
    # no identifier column: the line number is the CID
    path = write(tmp_path / "noid.tsv", ["SMILES\tdescription"] + [f"{s}\t{d}" for _, s, d in rows])
    dataset = data.read_pairs(path, ColumnNames(cid=None))
    assert dataset.column_names == ["cid", "smiles", "description"]
    assert list(dataset["cid"]) == ["2", "3", "4"]


def test_jsonl_matches_tsv(chebi20: Path, tmp_path: Path):
    rows = data.read_tsv_records(chebi20 / "test.txt")[:30]
    lines = [json.dumps({"cid": int(r["cid"]), "smiles": r["smiles"], "description": r["description"]}) for r in rows]
    lines.insert(3, "{not json")
    lines.insert(6, json.dumps({"cid": 1, "smiles": "C"}))
    lines.append("")
    path = write(tmp_path / "pairs.jsonl", lines)
    with pytest.warns(DataWarning) as caught:
        dataset = data.read_pairs(path)
    assert [str(w.message).split(": ", 1)[0] for w in caught] == [f"{path}:4", f"{path}:7"]
    assert "invalid JSON" in str(caught[0].message) and "no key 'description'" in str(caught[1].message)
    assert dataset.to_list() == rows
    assert sum("\\" in s for s in dataset["smiles"]) == sum("\\" in r["smiles"] for r in rows) > 0


def test_official_setting_is_the_default(chebi20: Path):
    if not (chebi20 / "train.txt").is_file():
        pytest.skip(f"{chebi20 / 'train.txt'} absent: the official train split is needed (t2m data download chebi20)")
    splits = data.load_chebi20_records(chebi20)
    assert splits.setting == "official"
    assert splits.sizes() == {"train": 26407, "dev": 300, "test": 3300}
    assert set(splits.files) == {"train.txt", "validation.txt", "test.txt"}
    train, dev, test = ({r["cid"] for r in getattr(splits, s)} for s in ("train", "dev", "test"))
    assert not (train & dev) and not (train & test) and not (dev & test)
    # the same dev slice as the benchmark setting's: one tuning set for every setting
    assert hashlib.sha256("\n".join(sorted(dev)).encode()).hexdigest() == DEV_SLICE_SHA256
    assert splits.describe()["sources"] == {
        "train": "train.txt", "dev": "the 300 validation.txt rows with the smallest sha256(CID)", "test": "test.txt"}


def test_benchmark_setting_sizes_and_determinism(chebi20: Path):
    splits = data.load_chebi20_records(chebi20, "benchmark")
    assert splits.setting == "benchmark"
    assert splits.sizes() == {"train": 4791, "dev": 300, "test": 3300}  # 3,001 of validation + 1,790 recovered
    assert set(splits.files) == {"validation.txt", "test.txt", "train_recovered.txt"}
    assert data.load_chebi20_records(chebi20, "benchmark-validation").sizes() == {"train": 3001, "dev": 300, "test": 3300}
    train, dev, test = ({r["cid"] for r in getattr(splits, s)} for s in ("train", "dev", "test"))
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert hashlib.sha256("\n".join(sorted(dev)).encode()).hexdigest() == DEV_SLICE_SHA256
    # the documented rule, computed independently: smallest sha256(CID) hex digests
    validation = data.read_tsv_records(chebi20 / "validation.txt")
    ranked = sorted(validation, key=lambda r: hashlib.sha256(r["cid"].encode()).hexdigest())
    assert dev == {r["cid"] for r in ranked[:300]}
    # file order is kept, and a second load is identical
    order = {r["cid"]: i for i, r in enumerate(validation)}
    assert [order[r["cid"]] for r in splits.dev] == sorted(order[r["cid"]] for r in splits.dev)
    assert data.load_chebi20_records(chebi20, "benchmark").dev == splits.dev


def test_load_chebi20_dataset_dict_names_setting(chebi20: Path):
    splits = data.load_chebi20(chebi20, "benchmark")
    assert splits.setting == "benchmark"
    assert {name: len(ds) for name, ds in splits.items()} == {"train": 4791, "dev": 300, "test": 3300}
    assert splits["test"].column_names == ["cid", "smiles", "description"]
    assert "benchmark" in splits["dev"].info.description


def test_official_setting_when_train_present(chebi20: Path, tmp_path: Path):
    lines = (chebi20 / "validation.txt").read_text(encoding="utf-8").split("\n")
    write(tmp_path / "train.txt", lines[:11])
    write(tmp_path / "validation.txt", [lines[0]] + lines[11:31])
    write(tmp_path / "test.txt", [lines[0]] + lines[31:36])
    splits = data.load_chebi20_records(tmp_path, dev_size=4)
    assert (splits.setting, splits.sizes()) == ("official", {"train": 10, "dev": 4, "test": 5})
    benchmark = data.load_chebi20_records(tmp_path, "benchmark", dev_size=4)
    assert (benchmark.setting, benchmark.sizes()) == ("benchmark", {"train": 16, "dev": 4, "test": 5})
    assert benchmark.dev == splits.dev
    (tmp_path / "train.txt").unlink()
    assert data.load_chebi20_records(tmp_path, dev_size=4).setting == "benchmark"  # auto falls back
    with pytest.raises(FileNotFoundError, match="train.txt: missing, needed by the official setting"):
        data.load_chebi20_records(tmp_path, "official", dev_size=4)


def test_data_dir_resolution(chebi20: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("T2M_SHARED_DATA", str(chebi20.parent))
    assert data.resolve_chebi20_dir() == chebi20
    monkeypatch.setenv("T2M_SHARED_DATA", str(tmp_path))  # no chebi20/ there: the next candidates are tried
    assert data.resolve_chebi20_dir() != tmp_path / "chebi20"
    with pytest.raises(FileNotFoundError, match="t2m data download chebi20"):
        data.resolve_chebi20_dir(tmp_path)
    # a given folder is the ChEBI-20 folder itself or one that holds it (as ../shared/data holds chebi20/)
    assert data.resolve_chebi20_dir(chebi20) == chebi20
    assert data.resolve_chebi20_dir(chebi20.parent) == chebi20


def test_unlabeled_split(chebi20: Path):
    records = data.load_chebi20_unlabeled_records(chebi20)
    assert len(records) == 26409
    assert set(records[0]) == {"cid", "smiles"}
    assert sum("\\" in r["smiles"] for r in records) == 3979
    assert not any("\\\\" in r["smiles"] for r in records)


def test_write_predictions_molt5_format(tmp_path: Path):
    path = tmp_path / "preds.txt"
    data.write_predictions(path, "text2mol", ["a\tdescription", "b"], ["C/C=C\\C", "CC"], ["C/C=C\\C", ""])
    assert path.read_text().split("\n") == [
        "description\tground truth\toutput", "a description\tC/C=C\\C\tC/C=C\\C", "b\tCC\t", "",
    ]
    data.write_predictions(path, "mol2text", ["CC"], ["ethane"], ["methane"])
    assert path.read_text().startswith("SMILES\tground truth\toutput\n")
    with pytest.raises(ValueError, match="one entry per row"):
        data.write_predictions(path, "mol2text", ["CC"], [], ["x"])


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".bz2"])
def test_compressed_pair_files_read_as_the_file_inside(chebi20: Path, tmp_path: Path, suffix: str):
    import bz2
    import gzip
    import lzma

    compress = {".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress}[suffix]
    raw = b"\n".join((chebi20 / "test.txt").read_bytes().split(b"\n")[:41]) + b"\n"
    plain = tmp_path / "pairs.tsv"
    plain.write_bytes(raw)
    packed = tmp_path / f"pairs.tsv{suffix}"
    packed.write_bytes(compress(raw))
    assert data.read_records(packed) == data.read_records(plain) and len(data.read_records(plain)) == 40
    rows = data.read_records(plain)[:5]
    jsonl = tmp_path / f"pairs.jsonl{suffix}"
    jsonl.write_bytes(compress("\n".join(json.dumps(r) for r in rows).encode()))
    assert data.read_records(jsonl) == rows
    broken = tmp_path / f"broken.tsv{suffix}"
    broken.write_bytes(b"not compressed at all")
    with pytest.raises(DataFormatError, match=f"broken.tsv{suffix}: not a readable {suffix} file"):
        data.read_records(broken)
