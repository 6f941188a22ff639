"""Retrieval-augmented translation through the public Translator API."""

from __future__ import annotations

import pytest

from t2m.generate import KNNSettings, Translator


@pytest.fixture(scope="module")
def store_and_rows(tiny_model_dir, tiny_chebi20, tmp_path_factory):
    from datastore.cli import build_task_datastore, training_records

    out = tmp_path_factory.mktemp("store") / "mol2text"
    build_task_datastore(tiny_model_dir, "mol2text", out, tiny_chebi20, setting="benchmark", dev_size=20,
                         index_factory="Flat", max_source_len=128, max_target_len=64, progress=False)
    records, _ = training_records(tiny_chebi20, "benchmark", 20)
    return out, records


def test_lambda_zero_is_the_model(tiny_model_dir, store_and_rows):
    store, records = store_and_rows
    translator = Translator.from_pretrained(tiny_model_dir)
    sources = [r["smiles"] for r in records[:3]]
    plain = translator.translate(sources, task="mol2text", num_beams=2, max_new_tokens=12)
    knn = translator.translate(sources, task="mol2text", num_beams=2, max_new_tokens=12,
                               knn=KNNSettings(store, k=4, lambda_=0.0, temperature=10.0))
    assert [t.output for t in knn] == [t.output for t in plain]


def test_lambda_one_k_one_recalls_the_training_target(tiny_model_dir, store_and_rows):
    """With retrieval alone (lambda 1, k 1) greedy decoding of a training source walks its own stored
    decoder states and so writes its training target (up to the stored target length)."""
    store, records = store_and_rows
    translator = Translator.from_pretrained(tiny_model_dir)
    row = records[0]
    target_ids = translator.tokenizer(row["description"], add_special_tokens=False)["input_ids"][:10]
    out = translator.translate([row["smiles"]], task="mol2text", max_new_tokens=len(target_ids),
                               knn=KNNSettings(store, k=1, lambda_=1.0, temperature=1.0, exact=True))
    expected = translator.tokenizer.decode(target_ids, skip_special_tokens=True)
    assert out[0].output == expected.strip()


def test_store_built_for_another_model_is_refused(tiny_model_dir, store_and_rows, tmp_path):
    import shutil

    import torch
    from transformers import T5ForConditionalGeneration

    store, records = store_and_rows
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    model = T5ForConditionalGeneration.from_pretrained(other)
    with torch.no_grad():
        model.shared.weight.mul_(1.5)
    model.save_pretrained(other)
    translator = Translator.from_pretrained(other)
    with pytest.raises(Exception, match="(?i)model"):
        translator.translate([records[0]["smiles"]], task="mol2text", max_new_tokens=3, knn=KNNSettings(store))
