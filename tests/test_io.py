"""t2m.io: the one atomic-write helper and the one file-hash helper of t2m."""

from __future__ import annotations

import hashlib

import pytest

from t2m.io import atomic_write_text, file_sha256


def test_file_sha256_is_the_hash_of_the_bytes_and_says_what_a_missing_file_gives(tmp_path):
    path = atomic_write_text(tmp_path / "pairs.tsv", "CID\tSMILES\tdescription\n1\tCCO\tethanol\n")
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path, chunk_size=3) == file_sha256(path)  # read in chunks, same digest
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.tsv")
    assert file_sha256(tmp_path / "missing.tsv", default="") == ""  # translate_job's resume signature
    assert file_sha256(tmp_path, default="") == ""  # a folder cannot be read as a file either


def test_the_store_builder_is_not_imported_for_a_hash():
    """t2m's core hashes files with t2m.io.file_sha256; datastore keeps no file-hash helper for t2m."""
    import datastore.store

    assert not hasattr(datastore.store, "file_sha256")
