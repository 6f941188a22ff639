"""Issue 18: a resumed datastore build says where it resumes; a damaged unfinished build names resume=False;
a finished store's files are checked against datastore.json when it loads."""

from __future__ import annotations

import json

import pytest
import torch

from datastore.build import PairBatches, build_datastore, plain_encoder, work_dir_for
from datastore.store import Datastore, DatastoreError
from datastore.testing import tiny_pairs

N_ROWS = 40
BATCH = 8


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def setup(shared_data):
    torch.set_num_threads(1)
    tokenizer, model, sources, targets = tiny_pairs(shared_data / "chebi20" / "validation.txt", N_ROWS,
                                                    "description", "SMILES")
    return tokenizer, model, PairBatches(plain_encoder(tokenizer, 256, 256), sources, targets, BATCH)


def _build(setup, out, **kwargs):
    tokenizer, model, batches = setup
    return build_datastore(model, batches, out, tokenizer=tokenizer, task="text2mol", index_factory="Flat",
                           chunk_batches=2, progress=False, **kwargs)


def _interrupted(setup, out):
    def crash_after_two(chunk: int) -> None:
        if chunk == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _build(setup, out, on_chunk_done=crash_after_two)


def test_resumed_build_says_at_which_batch(setup, tmp_path, capsys):
    out = tmp_path / "ds"
    _interrupted(setup, out)
    _build(setup, out)
    assert f"datastore build: resuming at batch 5 of 5 (the batches before were kept in {work_dir_for(out)})" \
        in capsys.readouterr().out

    # a finished store: its files are checked against datastore.json
    Datastore.load(out)
    index = out / "index.faiss"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(DatastoreError, match=r"index\.faiss holds .* bytes, but datastore\.json says .*--overwrite"):
        Datastore.load(out)
    values = out / "values.npy"
    values.write_bytes(values.read_bytes()[:-4])
    with pytest.raises(DatastoreError, match=r"values\.npy: .* bytes, but datastore\.json says .* the file is truncated"):
        Datastore.load(out)


def test_a_damaged_chunk_names_no_resume(setup, tmp_path):
    out = tmp_path / "ds"
    _interrupted(setup, out)
    chunk = work_dir_for(out) / "chunks" / "c000001.keys.npy"
    chunk.write_bytes(chunk.read_bytes()[:-64])
    for _ in range(2):  # a rerun fails the same way: the message says how to start over
        with pytest.raises(DatastoreError, match="c000001: a damaged chunk of the unfinished build .* resume=False"):
            _build(setup, out)
    _build(setup, out, resume=False)
    assert Datastore.load(out).count > 0


def test_a_damaged_progress_file_names_no_resume(setup, tmp_path):
    out = tmp_path / "ds"
    _interrupted(setup, out)
    (work_dir_for(out) / "progress.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(FileExistsError, match="resume=False"):
        _build(setup, out)
    _build(setup, out, resume=False)
    assert json.loads((out / "datastore.json").read_text())["count"] > 0
