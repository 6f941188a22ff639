"""The kNN-MT datastore on real ChEBI-20 rows with a tiny random T5: build, store, index, refusal,
resume, and retrieval-augmented decoding (greedy, beam with the cache, sampling)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datastore import (
    Datastore,
    DatastoreError,
    DatastoreMismatchError,
    PairBatches,
    build_datastore,
    knn_generation,
    plain_encoder,
)
from datastore.build import work_dir_for
from datastore.testing import tiny_pairs, tiny_t5, train_tokenizer

N_ROWS = 40
BATCH = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(shared_data):
    """text2mol pairs (description -> SMILES) of the first validation rows, tokenizer, tiny model."""
    tokenizer, model, sources, targets = tiny_pairs(shared_data / "chebi20" / "validation.txt", N_ROWS,
                                                    "description", "SMILES")
    batches = PairBatches(plain_encoder(tokenizer, 256, 256), sources, targets, BATCH)
    return tokenizer, model, sources, targets, batches


@pytest.fixture(scope="module")
def store(setup, tmp_path_factory):
    tokenizer, model, _, _, batches = setup
    out = tmp_path_factory.mktemp("ds") / "text2mol"
    build_datastore(model, batches, out, tokenizer=tokenizer, task="text2mol", index_factory="Flat",
                    data={"files": [{"path": "validation.txt", "rows": N_ROWS}]}, chunk_batches=2,
                    progress=False)
    return Datastore.load(out, model=model, tokenizer=tokenizer)


def _target_ids(tokenizer, targets):
    return [tokenizer(t)["input_ids"] for t in targets]  # each ends with </s>


# ------------------------------------------------------------------------------------------ build


def test_entries_are_the_non_pad_target_tokens(setup, store):
    tokenizer, _, _, targets, _ = setup
    ids = _target_ids(tokenizer, targets)
    assert store.count == sum(len(row) for row in ids)
    # the entries are row by row, position by position, and each value is that target token
    expected_values = np.concatenate([np.asarray(row) for row in ids])
    np.testing.assert_array_equal(store.values, expected_values)
    expected_rows = np.concatenate([np.full(len(row), i) for i, row in enumerate(ids)])
    np.testing.assert_array_equal(store.rows, expected_rows)
    expected_positions = np.concatenate([np.arange(len(row)) for row in ids])
    np.testing.assert_array_equal(store.positions, expected_positions)
    assert tokenizer.pad_token_id not in set(store.values.tolist())
    assert store.keys.dtype == np.float16 and isinstance(store.keys, np.memmap)
    assert store.keys.shape == (store.count, model_dim(setup))


def model_dim(setup) -> int:
    return setup[1].config.d_model


def test_json_describes_the_store(setup, store):
    meta = json.loads((store.path / "datastore.json").read_text())
    assert meta["count"] == store.count and meta["dim"] == model_dim(setup)
    assert meta["arrays"]["keys"] == {"file": "keys.npy", "dtype": "float16", "shape": [store.count, 32]}
    assert meta["arrays"]["values"]["dtype"] == "int32"
    assert meta["task"] == "text2mol"
    assert meta["key"]["layer"] == "lm_head_input" and meta["key"]["scaled_d_model_inv_sqrt"] is True
    assert meta["data"]["files"][0]["rows"] == N_ROWS
    assert set(meta["knn"]) >= {"k", "lambda", "temperature"}
    # the default temperature is on the keys' scale: the median squared distance to the nearest other key
    keys = store.keys.astype(np.float32)
    picks = np.sort(np.random.default_rng(0).choice(len(keys), min(1024, len(keys)), replace=False))
    d = ((keys[picks, None, :] - keys[None, :, :]) ** 2).sum(-1)  # (1024, count)
    d[np.arange(len(picks)), picks] = np.inf
    assert meta["knn"]["temperature"] == pytest.approx(float(np.median(d.min(1))), rel=2e-2)
    assert "nearest other key" in meta["knn"]["temperature_source"]
    assert meta["index"]["factory"] == "Flat" and (store.path / "index.faiss").is_file()
    assert len(meta["model"]["fingerprint"]) == 32 and len(meta["tokenizer"]["fingerprint"]) == 32
    # plain data only: every array loads without pickle
    for spec in meta["arrays"].values():
        np.load(store.path / spec["file"], allow_pickle=False)
    assert not work_dir_for(store.path).exists()


@pytest.mark.parametrize("tied", [True, False])
def test_keys_are_what_the_lm_head_reads(setup, tmp_path, tied):
    """Keys = decoder final state after the final norm, times d_model**-0.5 when the config scales."""
    tokenizer, _, sources, targets, _ = setup
    model = tiny_t5(len(tokenizer), tie_word_embeddings=tied)
    batches = PairBatches(plain_encoder(tokenizer), sources[:6], targets[:6], 3)
    build_datastore(model, batches, tmp_path / "ds", tokenizer=tokenizer, index_factory="none", progress=False)
    built = Datastore.load(tmp_path / "ds")
    assert built.meta["key"]["scaled_d_model_inv_sqrt"] is tied
    batch = batches[1]
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")},
                    output_hidden_states=True)
    final = out.decoder_hidden_states[-1] * (model.config.d_model ** -0.5 if tied else 1.0)  # (B, T, d)
    first = int(np.flatnonzero(built.rows == 3)[0])  # row 3 = first row of batch 1
    n = int((batch["labels"][0] != -100).sum())
    np.testing.assert_allclose(built.keys[first:first + n].astype(np.float32), final[0, :n].numpy(),
                               rtol=2e-3, atol=2e-3)
    # the logits of the LM head on the stored keys are the model's logits
    logits = model.lm_head(torch.from_numpy(built.keys[first:first + n].astype(np.float32)))
    assert torch.equal(logits.argmax(-1), out.logits[0, :n].argmax(-1))


def test_bf16_build_records_its_precision_and_keeps_the_keys_close(setup, store, tmp_path):
    """compute_dtype=bf16 runs the forward under autocast: the same entries, keys within bf16's rounding of
    the float32 build's, the dtype recorded; a resumed build in another precision starts over."""
    tokenizer, model, _, _, batches = setup
    out = tmp_path / "bf16"
    stopped = []

    def stop_after_first(chunk):
        stopped.append(chunk)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a float32 build interrupted after its first chunk
        build_datastore(model, batches, out, tokenizer=tokenizer, index_factory="Flat", chunk_batches=2,
                        progress=False, on_chunk_done=stop_after_first)
    done = []
    build_datastore(model, batches, out, tokenizer=tokenizer, task="text2mol", index_factory="Flat",
                    data={"files": [{"path": "validation.txt", "rows": N_ROWS}]}, chunk_batches=2,
                    compute_dtype=torch.bfloat16, progress=False, on_chunk_done=done.append)
    assert done[0] == 0  # the float32 chunk was not reused
    built = Datastore.load(out, model=model, tokenizer=tokenizer)
    assert built.meta["build"]["compute_dtype"] == "bfloat16" and built.meta["build"]["dtype"] == "float32"
    assert store.meta["build"]["compute_dtype"] == "float32"
    build = built.meta["build"]  # the whole build's wall time: forward, merge and index
    assert build["seconds"] >= build["compute_seconds"] + build["merge_seconds"] > 0
    np.testing.assert_array_equal(built.values, store.values)
    np.testing.assert_array_equal(built.rows, store.rows)
    a, b = built.keys.astype(np.float32), store.keys.astype(np.float32)
    relative = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    assert 0 < np.median(relative) < 0.02
    # the nearest stored key of each float32 key is (nearly always) itself in the bf16 store
    nearest = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1).argmin(1)
    assert np.mean(nearest == np.arange(len(b))) > 0.95


def test_layer_option_block(setup, tmp_path):
    tokenizer, model, sources, targets, _ = setup
    batches = PairBatches(plain_encoder(tokenizer), sources[:4], targets[:4], 4)
    build_datastore(model, batches, tmp_path / "ds", tokenizer=tokenizer, layer="block:0", index_factory="none",
                    progress=False)
    built = Datastore.load(tmp_path / "ds")
    with torch.no_grad():
        out = model(**{k: batches[0][k] for k in ("input_ids", "attention_mask", "labels")},
                    output_hidden_states=True)
    n = int((batches[0]["labels"][0] != -100).sum())
    np.testing.assert_allclose(built.keys[:n].astype(np.float32), out.decoder_hidden_states[1][0, :n].numpy(),
                               rtol=2e-3, atol=2e-3)
    assert built.layer == "block:0"


def test_mismatched_model_or_tokenizer_is_refused(setup, store):
    tokenizer, model, sources, targets, _ = setup
    other_model = tiny_t5(len(tokenizer), seed=1)
    with pytest.raises(DatastoreMismatchError, match="weights"):
        Datastore.load(store.path, model=other_model)
    with pytest.raises(DatastoreMismatchError, match="datastore was built from model"):
        with knn_generation(other_model, store):
            pass
    bigger = tiny_t5(len(tokenizer), d_model=64)
    with pytest.raises(DatastoreMismatchError, match="architecture config"):
        store.check_matches(model=bigger)
    other_tokenizer = train_tokenizer(targets, 300)
    with pytest.raises(DatastoreMismatchError, match="tokenizer"):
        Datastore.load(store.path, tokenizer=other_tokenizer)
    # the same weights in float16 are the same model
    store.check_matches(model=tiny_t5(len(tokenizer)).half(), tokenizer=tokenizer)


def test_existing_store_is_not_overwritten_by_default(setup, store):
    tokenizer, model, _, _, batches = setup
    with pytest.raises(FileExistsError, match="already holds a datastore"):
        build_datastore(model, batches, store.path, tokenizer=tokenizer, index_factory="Flat", progress=False)


class _Interrupt(Exception):
    pass


def test_interrupted_build_leaves_no_store_and_resumes_to_the_same(setup, store, tmp_path):
    tokenizer, model, _, _, batches = setup
    out = tmp_path / "ds"

    def crash_after_two(chunk: int) -> None:
        if chunk == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        build_datastore(model, batches, out, tokenizer=tokenizer, task="text2mol", index_factory="Flat",
                        data={"files": [{"path": "validation.txt", "rows": N_ROWS}]}, chunk_batches=2,
                        progress=False, on_chunk_done=crash_after_two)
    assert not out.exists()
    with pytest.raises(DatastoreError, match="not a finished datastore.*resume"):
        Datastore.load(out)
    assert sorted(p.name for p in (work_dir_for(out) / "chunks").glob("*.json")) == ["c000000.json", "c000001.json"]

    computed = []
    build_datastore(model, batches, out, tokenizer=tokenizer, task="text2mol", index_factory="Flat",
                    data={"files": [{"path": "validation.txt", "rows": N_ROWS}]}, chunk_batches=2,
                    progress=False, on_chunk_done=computed.append)
    assert computed == [2]  # 5 batches in chunks of 2: chunks 0 and 1 were not recomputed
    resumed = Datastore.load(out, model=model, tokenizer=tokenizer)
    for name in ("keys", "values", "rows", "positions"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(store, name))


def test_rows_without_row_ids_are_global(setup, tmp_path):
    tokenizer, model, sources, targets, batches = setup
    raw = [{k: v for k, v in batches[i].items() if k != "rows"} for i in range(3)]
    build_datastore(model, raw, tmp_path / "ds", tokenizer=tokenizer, index_factory="none", chunk_batches=2,
                    progress=False)
    built = Datastore.load(tmp_path / "ds")
    assert sorted(set(built.rows.tolist())) == list(range(3 * BATCH))


# ---------------------------------------------------------------------------------------- decoding


def _encode(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_lambda_zero_decodes_the_base_models_tokens(setup, store):
    tokenizer, model, sources, _, _ = setup
    inputs = _encode(tokenizer, sources[:4] + ["The molecule is an alkane."])
    for kwargs in ({"num_beams": 1}, {"num_beams": 3}):
        base = model.generate(**inputs, max_new_tokens=24, do_sample=False, **kwargs)
        with knn_generation(model, store, k=8, lambda_=0.0) as processors:
            knn = model.generate(**inputs, max_new_tokens=24, do_sample=False, logits_processor=processors, **kwargs)
        assert torch.equal(base, knn), kwargs


@pytest.mark.parametrize("use_cache", [True, False])
def test_lambda_one_k_one_reproduces_training_targets(setup, store, use_cache):
    """With λ = 1 and k = 1 the next token is the value of the nearest key. Fed a training source and
    its own target prefix, the decoder state is (up to float16) the stored key of that row and position,
    so greedy decoding must write the training target, token by token, although the random model alone
    writes something else."""
    tokenizer, model, sources, targets, _ = setup
    picks = [0, 7, 19, 33]
    inputs = _encode(tokenizer, [sources[i] for i in picks])
    max_len = max(len(ids) for ids in _target_ids(tokenizer, targets)) + 2
    with knn_generation(model, store, k=1, lambda_=1.0, temperature=1.0) as processors:
        out = model.generate(**inputs, max_new_tokens=max_len, do_sample=False, logits_processor=processors,
                             use_cache=use_cache)
    decoded = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert decoded == [targets[i] for i in picks]
    base = tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=max_len, do_sample=False),
                                  skip_special_tokens=True)
    assert all(b != targets[i] for b, i in zip(base, picks))


def test_beam_search_with_knn_uses_the_cache_and_sees_every_beam(setup, store):
    tokenizer, model, sources, _, _ = setup
    inputs = _encode(tokenizer, sources[:3])
    traces_cached, traces_full = [], []
    with knn_generation(model, store, k=4, lambda_=0.5, temperature=5.0, trace=traces_cached) as processors:
        cached = model.generate(**inputs, num_beams=4, max_new_tokens=20, logits_processor=processors,
                                use_cache=True, return_dict_in_generate=True)
    assert cached.past_key_values is not None  # the cache was on
    assert all(t.neighbours.indices.shape == (3 * 4, 4) for t in traces_cached)
    # the mixed rows are normalised distributions
    assert torch.allclose(traces_cached[-1].mixed_log_probs.exp().sum(-1), torch.ones(12), atol=1e-4)
    with knn_generation(model, store, k=4, lambda_=0.5, temperature=5.0, trace=traces_full) as processors:
        full = model.generate(**inputs, num_beams=4, max_new_tokens=20, logits_processor=processors,
                              use_cache=False)
    assert torch.equal(cached.sequences, full)
    # retrieval moved the beams away from the base model's
    base = model.generate(**inputs, num_beams=4, max_new_tokens=20)
    assert not torch.equal(base, full)
    # the hook is gone after the block: plain generation is the base model again
    assert torch.equal(model.generate(**inputs, num_beams=4, max_new_tokens=20), base)


def test_sampling_with_knn_runs(setup, store):
    tokenizer, model, sources, targets, _ = setup
    inputs = _encode(tokenizer, sources[:2])
    torch.manual_seed(0)
    with knn_generation(model, store, k=1, lambda_=1.0, temperature=1.0) as processors:
        out = model.generate(**inputs, do_sample=True, top_k=50, max_new_tokens=200, logits_processor=processors)
    # p_kNN with k = 1 is one-hot: sampling must follow the training target too
    assert tokenizer.batch_decode(out, skip_special_tokens=True) == targets[:2]


def test_store_defaults_and_tuned_params_are_used(setup, store, tmp_path):
    from datastore.params import KNNParams

    tokenizer, model, sources, targets, batches = setup
    out = tmp_path / "ds"
    build_datastore(model, batches, out, tokenizer=tokenizer, index_factory="Flat", progress=False,
                    knn=KNNParams(k=1, lambda_=1.0, temperature=1.0))
    local = Datastore.load(out)
    inputs = _encode(tokenizer, sources[:2])
    with knn_generation(model, local) as processors:
        assert processors[0].params == KNNParams(1, 1.0, 1.0)
        out_ids = model.generate(**inputs, max_new_tokens=200, logits_processor=processors)
    assert tokenizer.batch_decode(out_ids, skip_special_tokens=True) == targets[:2]
    local.set_knn_params(KNNParams(k=8, lambda_=0.25, temperature=3.0), source="test")
    assert Datastore.load(out).knn_params == KNNParams(8, 0.25, 3.0)


def test_default_approximate_index_fits_a_small_store_and_finds_exact_keys(setup, tmp_path):
    """The default IVF index lowers its list count for a small store (faiss wants >= 39 keys per list),
    and still finds each training state's own key: λ = 1, k = 1 reproduces the training targets."""
    from datastore.index import DEFAULT_FACTORY

    tokenizer, model, sources, targets, batches = setup
    build_datastore(model, batches, tmp_path / "ds", tokenizer=tokenizer, progress=False)
    built = Datastore.load(tmp_path / "ds", model=model, tokenizer=tokenizer)
    index = built.meta["index"]
    assert index["requested_factory"] == DEFAULT_FACTORY and index["factory"] != DEFAULT_FACTORY
    assert built.count >= 39 * int(index["factory"].split(",")[0][3:]) and index["nprobe"]
    inputs = _encode(tokenizer, sources[:3])
    with knn_generation(model, built, k=1, lambda_=1.0) as processors:
        out = model.generate(**inputs, max_new_tokens=300, logits_processor=processors)
    assert tokenizer.batch_decode(out, skip_special_tokens=True) == targets[:3]
