"""Retrieval-augmented translation through the public Translator API."""

from __future__ import annotations

import pytest

from datastore.params import KNNParams, PartialKNNParams
from t2m.decoding.translator import Translator
from t2m.options import DecodingOptions, RetrievalOptions


@pytest.fixture(scope="module")
def store_and_rows(tiny_model_dir, tiny_chebi20, tmp_path_factory):
    from t2m.data import training_records
    from t2m.knn.store import build_task_datastore

    out = tmp_path_factory.mktemp("store") / "mol2text"
    build_task_datastore(tiny_model_dir, "mol2text", out, tiny_chebi20, setting="benchmark", dev_size=20,
                         index_factory="Flat", max_source_len=128, max_target_len=64, progress=False)
    records, _ = training_records(tiny_chebi20, "benchmark", 20)
    return out, records


def test_lambda_zero_is_the_model(tiny_model_dir, store_and_rows):
    store, records = store_and_rows
    translator = Translator.from_pretrained(tiny_model_dir)
    sources = [r["smiles"] for r in records[:3]]
    decoding = DecodingOptions(num_beams=2, max_new_tokens=12)
    plain = translator.translate(sources, "mol2text", decoding)
    knn = translator.translate(sources, "mol2text", decoding,
                               retrieval=RetrievalOptions(store, KNNParams(k=4, lambda_=0.0, temperature=10.0)))
    assert [t.output for t in knn] == [t.output for t in plain]


def test_lambda_one_k_one_recalls_the_training_target(tiny_model_dir, store_and_rows):
    """With retrieval alone (lambda 1, k 1) greedy decoding of a training source walks its own stored
    decoder states and so writes its training target (up to the stored target length)."""
    store, records = store_and_rows
    translator = Translator.from_pretrained(tiny_model_dir)
    row = records[0]
    target_ids = translator.tokenizer(row["description"], add_special_tokens=False)["input_ids"][:10]
    out = translator.translate([row["smiles"]], "mol2text", DecodingOptions(max_new_tokens=len(target_ids)),
                               retrieval=RetrievalOptions(store, KNNParams(k=1, lambda_=1.0, temperature=1.0), exact=True))
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
        translator.translate([records[0]["smiles"]], "mol2text", DecodingOptions(max_new_tokens=3),
                             retrieval=RetrievalOptions(store))


def test_row_restricted_search_is_exact_search_over_those_rows(store_and_rows):
    import numpy as np
    import torch

    from datastore import Datastore, RowRestrictedRetriever

    store = Datastore.load(store_and_rows[0])
    retriever = RowRestrictedRetriever(store)
    rows_per_input = [[0, 2], [1, 10_000]]  # a row id the store does not have gives nothing
    restriction = retriever.restriction(rows_per_input)
    generator = torch.Generator().manual_seed(0)
    keys = np.asarray(store.keys, dtype=np.float32)
    queries = torch.from_numpy(keys[[5, 40, 7, 90]]) + 0.01 * torch.randn(4, store.dim, generator=generator)
    found = retriever.search(queries, 3, restriction)  # 2 hypotheses per input, input-major
    for hyp in range(4):
        allowed = np.flatnonzero(np.isin(np.asarray(store.rows), rows_per_input[hyp // 2]))
        d = ((keys[allowed] - queries[hyp].numpy()) ** 2).sum(1)
        best = allowed[np.argsort(d, kind="stable")[:3]]
        assert found.indices[hyp].tolist() == best.tolist()
        assert np.allclose(found.distances[hyp].numpy(), np.sort(d)[:3], rtol=1e-4, atol=1e-4)
        assert found.values[hyp].tolist() == np.asarray(store.values)[best].tolist()
    with pytest.raises(RuntimeError, match="restriction"):
        retriever.search(queries[:3], 3, restriction)  # 3 hypotheses cannot split over 2 inputs
    # the retriever keeps no state: another restriction, the same retriever, the first one's results again
    retriever.search(queries, 3, retriever.restriction([[1], [2]]))
    assert retriever.search(queries, 3, restriction).indices.tolist() == found.indices.tolist()


def test_pair_finder_reads_the_store_pairs_and_finds_a_training_source_first(store_and_rows):
    from datastore import Datastore
    from t2m.chem import morgan_fingerprint
    from t2m.neighbours.pairs import PairFinder

    store_dir, records = store_and_rows
    finder = PairFinder.for_store(Datastore.load(store_dir))
    found = finder.nearest([records[7]["smiles"], records[3]["smiles"]], 4)
    assert [len(f) for f in found] == [4, 4]
    for rows, source in zip(found, (records[7], records[3])):
        # the nearest is the molecule itself (or one with the same fingerprint, earlier in the data)
        assert morgan_fingerprint(records[rows[0]]["smiles"]) == morgan_fingerprint(source["smiles"])


def test_pairs_restrict_each_input_to_its_own_training_pair(tiny_model_dir, store_and_rows):
    """λ 1, k 1, one nearest pair: each training source in a batch, at beam 2, writes its own target --
    its hypotheses retrieve among its own pair's entries only."""
    store, records = store_and_rows
    translator = Translator.from_pretrained(tiny_model_dir)
    rows = [records[i] for i in (0, 4, 9)]
    lengths = [len(translator.tokenizer(r["description"], add_special_tokens=False)["input_ids"]) for r in rows]
    n = min(8, *lengths)
    out = translator.translate([r["smiles"] for r in rows], "mol2text",
                               DecodingOptions(max_new_tokens=n, num_beams=2, batch_size=3),
                               retrieval=RetrievalOptions(store, KNNParams(k=1, lambda_=1.0, temperature=1.0, pairs=1)))
    for row, result in zip(rows, out):
        ids = translator.tokenizer(row["description"], add_special_tokens=False)["input_ids"][:n]
        assert result.output == translator.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_pairs_need_the_data_the_store_was_built_from(tiny_model_dir, store_and_rows, tmp_path):
    import json
    import shutil

    store, records = store_and_rows
    moved = tmp_path / "store"
    shutil.copytree(store, moved)
    meta = json.loads((moved / "datastore.json").read_text())
    meta["data"]["files"][0]["path"] = str(tmp_path / "gone" / "validation.txt")
    (moved / "datastore.json").write_text(json.dumps(meta))
    translator = Translator.from_pretrained(tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="gone/validation.txt"):
        translator.translate([records[0]["smiles"]], "mol2text", DecodingOptions(max_new_tokens=3),
                             retrieval=RetrievalOptions(moved, PartialKNNParams(pairs=2)))


def test_a_store_tuned_for_pairs_restricts_by_default(tiny_model_dir, store_and_rows, tmp_path):
    """A store whose tuned parameters name ``pairs`` restricts retrieval when the call does not say
    (it then needs the store's data: moving the data file away makes that visible); ``pairs=0`` searches
    the whole store, which does not."""
    import json
    import shutil

    from datastore import Datastore
    from datastore.params import KNNParams

    store, records = store_and_rows
    moved = tmp_path / "store"
    shutil.copytree(store, moved)
    Datastore.load(moved).set_knn_params(KNNParams(k=2, lambda_=0.5, temperature=1.0, pairs=3), source="test")
    assert Datastore.load(moved).knn_params.pairs == 3
    meta = json.loads((moved / "datastore.json").read_text())
    meta["data"]["files"][0]["path"] = str(tmp_path / "gone" / "validation.txt")
    (moved / "datastore.json").write_text(json.dumps(meta))
    translator = Translator.from_pretrained(tiny_model_dir)
    source = [records[0]["smiles"]]
    three = DecodingOptions(max_new_tokens=3)
    with pytest.raises(FileNotFoundError, match="gone/validation.txt") as error:
        translator.translate(source, "mol2text", three, retrieval=RetrievalOptions(moved))
    assert "pairs=0" in str(error.value)  # the message names the way out
    whole = translator.translate(source, "mol2text", three, retrieval=RetrievalOptions(moved, PartialKNNParams(pairs=0)))
    assert whole[0].output == translator.translate(source, "mol2text", three, retrieval=RetrievalOptions(
        store, PartialKNNParams(k=2, lambda_=0.5, temperature=1.0)))[0].output


def test_knn_params_keep_pairs_through_json():
    from datastore.params import KNNParams

    params = KNNParams(k=8, lambda_=0.6, temperature=0.02, pairs=4)
    assert KNNParams.from_json(params.to_json()) == params
    assert "pairs" not in KNNParams(k=8).to_json()  # whole-store stores keep their old JSON
    assert params.replace(pairs=0).pairs == 0 and params.replace(k=4).pairs == 4
    assert KNNParams(pairs=None) == KNNParams(pairs=0) == KNNParams()  # None (the old whole-store value) is 0
    with pytest.raises(ValueError, match=r"pairs=-1: must be 0 or more"):
        KNNParams(pairs=-1)
    partial = PartialKNNParams(lambda_=0.5)
    assert partial.given() == {"lambda_": 0.5} and partial.over(params) == params.replace(lambda_=0.5)
    with pytest.raises(ValueError, match=r"lambda_=1.5: must be in \[0, 1\]"):
        PartialKNNParams(lambda_=1.5)


def test_cli_knn_pairs(tiny_model_dir, store_and_rows, tmp_path):
    from t2m.cli import main

    store, records = store_and_rows
    out = tmp_path / "captions.txt"
    assert main(["translate", "--task", "mol2text", "--model", str(tiny_model_dir), "--knn", str(store),
                 "--knn-pairs", "2", "--knn-lambda", "0.5", "--output", str(out), "--max-new-tokens", "6",
                 records[0]["smiles"], records[1]["smiles"]]) == 0
    assert len(out.read_text().splitlines()) == 2


def test_jobs_workers_search_the_memory_mapped_store_as_one_process_does(tiny_model_dir, store_and_rows):
    """``--jobs`` workers open the store memory-mapped (index, keys, values): their translations are the
    single process's."""
    from t2m.decoding.pool import DecodePool

    store, records = store_and_rows
    sources = [r["smiles"] for r in records[:4]]
    decoding = DecodingOptions(num_beams=2, max_new_tokens=12)
    retrieval = RetrievalOptions(str(store), KNNParams(k=4, lambda_=0.5, temperature=10.0))
    one = Translator.from_pretrained(tiny_model_dir).translate(sources, "mol2text", decoding, retrieval=retrieval)
    with DecodePool(tiny_model_dir, jobs=2, threads=1, stores=[store]) as pool:
        pooled = pool.translate(sources, "mol2text", decoding, retrieval=retrieval)
    assert [t.output for t in pooled.translations] == [t.output for t in one]
