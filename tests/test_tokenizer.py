"""The shared text+SMILES tokenizer: exact round-trip on every ChEBI-20 string."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from t2m.model.checkpoint import default_model_dir
from t2m.tokenizer import load_tokenizer, round_trip_failures, train_tokenizer

HARD_STRINGS = [
    r"C/C=C(\C)/C(=O)O",  # cis/trans backslash
    "C[C@@H]1CC[C@H](O)CC1",
    "[NH4+].[Cl-]",
    "C%10CCCCC%10",
    "O=[N+]([O-])c1ccc(cc1)[Se][Se]c1ccc(cc1)[N+]([O-])=O",
    "The molecule is a β-D-glucoside; its m.p. is 42 ℃ — “quoted” (α/β) 1,2-diol…",
    " leading and  double spaces\tand a tab ",
    "émoji 😀 and ¹³C",
]


def _shared_texts(shared_data: Path) -> tuple[list[str], list[str]]:
    from t2m.data import load_chebi20_unlabeled_records, read_tsv_records

    smiles, descriptions = [], []
    for name in ("validation.txt", "test.txt"):
        for row in read_tsv_records(shared_data / "chebi20" / name):
            smiles.append(row["smiles"])
            descriptions.append(row["description"])
    smiles += [r["smiles"] for r in load_chebi20_unlabeled_records(shared_data / "chebi20")]
    return smiles, descriptions


@pytest.fixture(scope="module")
def project_tokenizer(shared_data, tmp_path_factory):
    """The shipped model's tokenizer when it is installed, else one trained here on the train split."""
    shipped = default_model_dir()
    if (shipped / "tokenizer.json").is_file():
        return load_tokenizer(shipped)
    from t2m.data import load_chebi20_records

    train = load_chebi20_records(shared_data / "chebi20", "benchmark").train
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer([r["description"] for r in train] + [r["smiles"] for r in train], out, vocab_size=4000)
    return load_tokenizer(out)


def test_round_trip_every_chebi20_string(shared_data, project_tokenizer):
    smiles, descriptions = _shared_texts(shared_data)
    assert len(smiles) == 3301 + 3300 + 26409
    assert sum("\\" in s for s in smiles) > 900
    assert round_trip_failures(project_tokenizer, smiles) == []
    assert round_trip_failures(project_tokenizer, descriptions) == []
    lengths_s = [len(ids) for ids in project_tokenizer(smiles[:6601], add_special_tokens=False)["input_ids"]]
    lengths_d = [len(ids) for ids in project_tokenizer(descriptions, add_special_tokens=False)["input_ids"]]
    print(f"tokens per SMILES {statistics.mean(lengths_s):.1f}, per description {statistics.mean(lengths_d):.1f}")


def test_round_trip_hard_strings(project_tokenizer):
    assert round_trip_failures(project_tokenizer, HARD_STRINGS) == []


def test_backslash_is_a_token_not_unknown(project_tokenizer):
    ids = project_tokenizer(r"C/C=C(\C)/C", add_special_tokens=False)["input_ids"]
    assert project_tokenizer.unk_token_id not in ids
    assert ids[-1] != project_tokenizer.eos_token_id
    assert project_tokenizer(r"CC")["input_ids"][-1] == project_tokenizer.eos_token_id


def test_save_load_keeps_vocabulary(tiny_tokenizer_dir, tmp_path):
    tok = load_tokenizer(tiny_tokenizer_dir)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert round_trip_failures(again, HARD_STRINGS) == []
