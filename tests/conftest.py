"""Shared test fixtures.

Real data is read from ``$T2M_SHARED_DATA`` (default ``<repo>/../shared/data``); tests that need it skip
with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("T2M_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "chebi20" / "test.txt").is_file():
        pytest.skip(f"shared ChEBI-20 data not found at {path} (set T2M_SHARED_DATA to the folder holding chebi20/)")
    return path


def _head_lines(src: Path, dst: Path, rows: int) -> None:
    with src.open(encoding="utf-8") as f:
        lines = [next(f) for _ in range(rows + 1)]
    dst.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_chebi20(shared_data, tmp_path_factory) -> Path:
    """A ChEBI-20 folder holding the first 160 validation rows, 40 test rows and 400 unlabeled molecules
    (real rows, copied into a temporary folder for the test session only)."""
    out = tmp_path_factory.mktemp("chebi20")
    src = shared_data / "chebi20"
    _head_lines(src / "validation.txt", out / "validation.txt", 160)
    _head_lines(src / "test.txt", out / "test.txt", 40)
    _head_lines(src / "train_smiles_unlabeled.tsv", out / "train_smiles_unlabeled.tsv", 400)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_chebi20, tmp_path_factory) -> Path:
    """Our text+SMILES tokenizer, trained on the tiny ChEBI-20 slice (vocabulary 600)."""
    from t2m.data import load_chebi20_unlabeled_records, read_tsv_records
    from t2m.tokenizer import train_tokenizer

    rows = read_tsv_records(tiny_chebi20 / "validation.txt")
    texts = [r["description"] for r in rows] + [r["smiles"] for r in rows]
    texts += [r["smiles"] for r in load_chebi20_unlabeled_records(tiny_chebi20)]
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(texts, out, vocab_size=600)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A randomly initialised tiny T5 (d_model 64, 2+2 layers) saved as a t2m checkpoint directory."""
    import torch
    from transformers import GenerationConfig, T5ForConditionalGeneration

    from t2m.model.checkpoint import make_config, write_checkpoint_info
    from t2m.tokenizer import load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    config = make_config("cpu-tiny", vocab_size=len(tokenizer), d_model=64, d_ff=128, d_kv=16, num_heads=4)
    model = T5ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_checkpoint_info(out)
    return out


@pytest.fixture
def one_torch_thread():
    """fcd's own get_fcd (torch, and scipy's sqrtm on OpenBLAS) spins its threads against other processes on
    a busy 2-core machine -- 20 s for 8 molecules: one thread each."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(previous)


def require_wordnet_or_fail():
    """The WordNet location from `t2m setup`; fails (not skips) the test with that instruction when absent."""
    from evaluation.wordnet import WordNetMissingError, require_wordnet

    try:
        return require_wordnet()
    except WordNetMissingError as e:
        pytest.fail(f"WordNet 3.0 is not set up -- run `t2m setup` before the tests.\n{e}")
