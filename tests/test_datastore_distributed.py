"""A datastore built by 2 CPU processes (torchrun, gloo) equals the one built by 1 process.

Run as a script by torchrun from the test: ``python -m torch.distributed.run --standalone
--nproc_per_node 2 tests/test_datastore_distributed.py MODEL_DIR DATA_TSV N_ROWS OUT``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

N_ROWS = 24
BATCH = 4
CHUNK = 2


def _batches(tokenizer, tsv: str, n_rows: int):
    from datastore import PairBatches, plain_encoder
    from datastore.testing import read_tsv_rows

    rows = read_tsv_rows(tsv, n_rows)
    return PairBatches(plain_encoder(tokenizer, 256, 256), [r["SMILES"] for r in rows],
                       [r["description"] for r in rows], BATCH, sort_by_length=True)


def _build(model_dir: str, tsv: str, n_rows: int, out: str) -> None:
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from datastore import build_datastore

    torch.set_num_threads(1)
    model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    build_datastore(model, _batches(tokenizer, tsv, n_rows), out, tokenizer=tokenizer, task="mol2text",
                    index_factory="Flat", chunk_batches=CHUNK, progress=False)


def test_two_process_build_equals_one_process_build(shared_data, tmp_path):
    import torch

    from datastore import Datastore
    from datastore.testing import tiny_pairs

    tsv = str(shared_data / "chebi20" / "validation.txt")
    tokenizer, model, _, _ = tiny_pairs(tsv, N_ROWS, "SMILES", "description")
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    threads = torch.get_num_threads()
    try:
        _build(str(model_dir), tsv, N_ROWS, str(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
         str(model_dir), tsv, str(N_ROWS), str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    one = Datastore.load(tmp_path / "one", model=model, tokenizer=tokenizer)
    two = Datastore.load(tmp_path / "two", model=model, tokenizer=tokenizer)
    assert two.meta["build"]["world_size"] == 2
    assert one.count == two.count
    for name in ("values", "rows", "positions"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    np.testing.assert_allclose(one.keys.astype(np.float32), two.keys.astype(np.float32), rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    _build(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
