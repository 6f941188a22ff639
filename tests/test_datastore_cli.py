"""`t2m datastore build` / `inspect` end to end on a saved tiny checkpoint and real ChEBI-20 rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datastore.cli import subset_rows
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
                 "--k", "1", "--lambda", "1.0", "--temperature", "1.0"]) == 0
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


def test_subset_rows_are_nested_and_deterministic():
    quarter, half = subset_rows(100, 0.25), subset_rows(100, 0.5)
    assert len(quarter) == 25 and len(half) == 50 and set(quarter) <= set(half)
    assert subset_rows(100, 0.25) == quarter and subset_rows(7, 1.0) == list(range(7))
    assert np.all(np.diff(half) > 0)
    with pytest.raises(ValueError):
        subset_rows(10, 0.0)
