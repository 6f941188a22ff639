"""Manifests, git blob ids, and ``t2m data download`` / ``t2m data info`` (no network: local copies and file:// URLs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from t2m import data, download
from t2m.cli import main

BLOB_IDS = {
    "train": "c1b42b82fdc8fb5287614e159196e25370763aac",
    "validation": "694d328d621966d5c9ad0f36083fdfcf293191d5",
    "test": "cf6da70d55c2745c6e64cf6864ea8cdbcdc80663",
    "train_smiles_unlabeled": "2f12dff2c35cd65c1e5d62293336927d184ad334",
}


@pytest.fixture(scope="module")
def chebi20(shared_data: Path) -> Path:
    return shared_data / "chebi20"


def test_git_blob_id_matches_git():
    assert download.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert download.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_manifest_describes_the_files(chebi20: Path):
    manifest = download.load_manifest("chebi20")
    assert manifest["columns"] == ["CID", "SMILES", "description"]
    assert {split: spec["git_blob"] for split, spec in manifest["splits"].items()} == BLOB_IDS
    assert "BSD-3-Clause" in manifest["license"]["files"]
    for split, spec in manifest["splits"].items():
        assert spec["file"] == data.CHEBI20_FILES.get(split, data.CHEBI20_UNLABELED_FILE)
        if split == "train_smiles_unlabeled":
            assert spec["url"] is None and spec["local_only"]
        else:
            assert spec["url"] == f"https://raw.githubusercontent.com/blender-nlp/MolT5/main/ChEBI-20_data/{split}.txt"
        path = chebi20 / spec["file"]
        if path.is_file():
            assert download.file_blob_id(path) == spec["git_blob"]
            assert path.read_bytes().count(b"\n") - 1 == spec["rows"]
            assert path.stat().st_size == spec["bytes"]


def test_file_blob_id_agrees_with_git_hash_object(chebi20: Path):
    try:
        out = subprocess.run(["git", "hash-object", str(chebi20 / "test.txt")], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not available")
    assert out.stdout.strip() == download.file_blob_id(chebi20 / "test.txt") == BLOB_IDS["test"]


def test_download_from_local_dir(chebi20: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    target = tmp_path / "chebi20"
    assert main(["data", "download", "chebi20", "--from", str(chebi20), "--to", str(target)]) == 0
    out = capsys.readouterr().out
    for split in ("validation", "test"):
        assert (target / f"{split}.txt").read_bytes() == (chebi20 / f"{split}.txt").read_bytes()
        assert f"{split}.txt: copied from" in out
    if not (chebi20 / "train.txt").exists():
        assert "train.txt: not found; download it from https://raw.githubusercontent.com/blender-nlp/MolT5/main/ChEBI-20_data/train.txt" in out
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []  # no temp files left
    # a second run keeps the verified copies
    assert main(["data", "download", "chebi20", "--from", str(chebi20), "--to", str(target)]) == 0
    assert "already present, git blob id verified" in capsys.readouterr().out
    # and the copy is a usable ChEBI-20 directory, in the official setting when train.txt came along
    official = (chebi20 / "train.txt").is_file()
    assert data.load_chebi20_records(target).sizes() == {"train": 26407 if official else 3001, "dev": 300, "test": 3300}


def test_mismatching_file_is_refused(chebi20: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    (source / "validation.txt").write_bytes((chebi20 / "validation.txt").read_bytes())
    (source / "test.txt").write_bytes((chebi20 / "test.txt").read_bytes().replace(b"steroid", b"steroyd", 1))
    assert main(["data", "download", "chebi20", "--from", str(source), "--to", str(target)]) == 1
    out = capsys.readouterr().out
    assert f"{source / 'test.txt'}: refused test.txt (test): git blob id" in out
    assert f"does not match the manifest's {BLOB_IDS['test']}; not installed" in out
    assert sorted(p.name for p in target.iterdir()) == ["validation.txt"]


def test_download_by_url(chebi20: Path, tmp_path: Path):
    manifest = download.load_manifest("chebi20")
    for split, spec in manifest["splits"].items():
        spec["url"] = (chebi20 / spec["file"]).as_uri()  # file:// URLs: urllib's download path, offline
        if split == "test":
            spec["git_blob"] = "0" * 40
    path = tmp_path / "local.json"
    path.write_text(json.dumps(manifest))
    results = {r.split: r for r in download.fetch_dataset(path, tmp_path / "out")}
    assert results["validation"].status == download.DOWNLOADED
    assert results["test"].status == download.REFUSED and "0" * 40 in results["test"].message
    assert not (tmp_path / "out" / "test.txt").exists()


def test_info_prints_the_official_split(chebi20: Path, capsys: pytest.CaptureFixture):
    if not (chebi20 / "train.txt").is_file():
        pytest.skip(f"{chebi20 / 'train.txt'} absent: the official train split is needed (t2m data download chebi20)")
    assert main(["data", "info", "--data", str(chebi20)]) == 0
    out = capsys.readouterr().out
    assert "setting: official" in out
    assert "train  26407  train.txt" in out and "dev      300" in out and "test    3300  test.txt" in out
    assert "train.txt                    verified" in out and "validation.txt               verified" in out
    assert f"train.txt                    {data.hashlib.sha256((chebi20 / 'train.txt').read_bytes()).hexdigest()}" in out
    assert "not the official setting" not in out


def test_info_prints_the_benchmark_split(chebi20: Path, capsys: pytest.CaptureFixture):
    assert main(["data", "info", "--data", str(chebi20), "--setting", "benchmark"]) == 0
    out = capsys.readouterr().out
    assert "setting: benchmark" in out
    assert "train   4791" in out and "dev      300" in out and "test    3300" in out
    assert "not the official setting: its numbers do not compare with published ChEBI-20 results" in out


def test_changed_train_file_is_refused_and_reported(chebi20: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """One changed byte in train.txt: `t2m data download` refuses it, `t2m data info` says it is not verified."""
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    for name in ("validation.txt", "test.txt"):
        (source / name).write_bytes((chebi20 / name).read_bytes())
    lines = (chebi20 / "validation.txt").read_bytes().split(b"\n")
    (source / "train.txt").write_bytes(b"\n".join(lines[:50]).replace(b"acid", b"acyd", 1) + b"\n")
    assert main(["data", "download", "chebi20", "--from", str(source), "--to", str(target)]) == 1
    out = capsys.readouterr().out
    assert f"{source / 'train.txt'}: refused train.txt (train): git blob id" in out
    assert f"does not match the manifest's {BLOB_IDS['train']}; not installed" in out
    assert not (target / "train.txt").exists()
    assert main(["data", "info", "--data", str(source)]) == 0  # info reads it, and says it is not the official file
    out = capsys.readouterr().out
    assert f"train.txt                    refused: {source / 'train.txt'}: git blob id" in out
    assert f"expected {BLOB_IDS['train']}" in out


def test_unknown_manifest_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match=r"known: .*chebi20"):
        download.load_manifest("nope")
