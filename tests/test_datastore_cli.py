"""`t2m datastore build` / `inspect` end to end on a saved tiny checkpoint and real ChEBI-20 rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from t2m.knn.store import subset_rows
from datastore.testing import read_tsv_rows, tiny_pairs

N_ROWS = 24


@pytest.fixture(scope="module")
def checkpoint(shared_data, tmp_path_factory):
    """A tiny T5 checkpoint directory and a 24-row pairs file cut from validation.txt."""
    torch.set_num_threads(1)
    tsv = shared_data / "chebi20" / "validation.txt"
    tokenizer, model, _, _ = tiny_pairs(tsv, N_ROWS, "SMILES", "description")
    folder = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    lines = tsv.read_text(encoding="utf-8").splitlines()[: N_ROWS + 1]
    (folder / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, read_tsv_rows(tsv, N_ROWS)


def test_build_and_inspect_from_the_command_line(checkpoint, capsys):
    from t2m.cli import main

    from datastore import Datastore

    folder, rows = checkpoint
    out = folder / "store"
    assert main(["datastore", "build", "--model", str(folder / "model"), "--data", str(folder / "pairs.tsv"),
                 "--task", "mol2text", "--out", str(out), "--index", "Flat", "--batch-size", "8",
                 "--k", "1", "--knn-lambda", "1.0", "--temperature", "1.0"]) == 0
    store = Datastore.load(out)
    assert store.task == "mol2text" and store.meta["data"]["rows"] == N_ROWS
    assert store.meta["data"]["files"][0]["sha256"]
    assert sorted(set(store.rows.tolist())) == list(range(N_ROWS))
    capsys.readouterr()

    report_path = folder / "inspect.json"
    assert main(["datastore", "inspect", "--store", str(out), "--model", str(folder / "model"), rows[5]["SMILES"],
                 "--json", str(report_path), "--neighbours", "2"]) == 0
    printed = capsys.readouterr().out
    assert "p_model" in printed and "neighbours" in printed
    report = json.loads(report_path.read_text())
    # with lambda = 1 and k = 1 a training source decodes to its own caption, each token retrieved from
    # that row at that position, and retrieval is what moved the token to probability 1
    assert report["output"] == rows[5]["description"]
    for step, token in enumerate(report["tokens"]):
        nearest = token["neighbours"][0]
        assert (nearest["row"], nearest["position"]) == (5, step)
        assert token["p_mixed"] == pytest.approx(1.0)
        assert nearest["token"] == token["token"]
    # inspect decodes as `t2m translate` does (Translator.decode): the same output, one row per generated token
    from t2m.decoding.translator import Translator
    from t2m.model.checkpoint import load_model
    from t2m.options import DecodingOptions, RetrievalOptions

    model, tokenizer, info = load_model(folder / "model")
    [same] = Translator(model, tokenizer, info).translate([rows[5]["SMILES"]], "mol2text", DecodingOptions(),
                                                          retrieval=RetrievalOptions(store))
    assert same.output == report["output"]
    assert [token["token_id"] for token in report["tokens"]] == same.token_ids[0]


def test_build_options_reach_the_index_and_are_recorded_as_in_force(checkpoint, capsys):
    from t2m.cli import main

    from datastore import Datastore

    folder, _ = checkpoint
    out = folder / "store-ivf"
    assert main(["datastore", "build", "--model", str(folder / "model"), "--data", str(folder / "pairs.tsv"),
                 "--task", "mol2text", "--out", str(out), "--index", "IVF4,Flat", "--nprobe", "3",
                 "--train-size", "200", "--gpu", "no", "--batch-size", "8"]) == 0
    index = Datastore.load(out).meta["index"]
    assert (index["factory"], index["nlist"], index["nprobe"], index["trained_on"]) == ("IVF4,Flat", 4, 3, 200)
    assert index["built_on_gpu"] is False and index["fallbacks"] == []
    capsys.readouterr()


def test_subset_rows_are_nested_and_deterministic():
    quarter, half = subset_rows(100, 0.25), subset_rows(100, 0.5)
    assert len(quarter) == 25 and len(half) == 50 and set(quarter) <= set(half)
    assert subset_rows(100, 0.25) == quarter and subset_rows(7, 1.0) == list(range(7))
    assert np.all(np.diff(half) > 0)
    with pytest.raises(ValueError):
        subset_rows(10, 0.0)


def test_a_store_cut_from_the_full_store_holds_the_entries_a_build_of_that_fraction_does(checkpoint, tmp_path):
    """subset_task_datastore (the bench's datastore-size stores) against build_task_datastore(fraction=0.5):
    the same (row, position, token) entries with the same keys, and its own index over them."""
    from datastore import Datastore
    from t2m.knn.store import build_task_datastore, subset_task_datastore

    folder, _ = checkpoint
    common = dict(data=folder / "pairs.tsv", index_factory="Flat", batch_size=8, progress=False)
    full = build_task_datastore(folder / "model", "text2mol", tmp_path / "full", **common)
    built = Datastore.load(build_task_datastore(folder / "model", "text2mol", tmp_path / "half", fraction=0.5,
                                                **common))
    cut = Datastore.load(subset_task_datastore(full, tmp_path / "cut", 0.5, progress=False))

    def entries(store):
        order = np.lexsort((store.positions, store.rows))
        return store.rows[order], store.positions[order], store.values[order], store.keys[order].astype(np.float32)

    (rows_a, pos_a, val_a, keys_a), (rows_b, pos_b, val_b, keys_b) = entries(cut), entries(built)
    assert cut.count == built.count < Datastore.load(full).count
    assert sorted(set(rows_a.tolist())) == subset_rows(N_ROWS, 0.5)
    assert np.array_equal(rows_a, rows_b) and np.array_equal(pos_a, pos_b) and np.array_equal(val_a, val_b)
    np.testing.assert_allclose(keys_a, keys_b, atol=2e-3)  # float16 keys; batches padded differently
    for name in ("rows", "of_rows", "fraction"):
        assert cut.meta["data"][name] == built.meta["data"][name]
    assert cut.meta["index"]["count"] == cut.count and cut.meta["build"]["subset_of"] == str(full)
    found = cut.retriever().search(torch.from_numpy(keys_a[:3]), 1)  # each key finds its own entry's token
    assert found.values[:, 0].tolist() == val_a[:3].tolist() and float(found.distances.max()) < 1e-4
    with pytest.raises(FileExistsError):
        subset_task_datastore(full, tmp_path / "cut", 0.5, progress=False)
