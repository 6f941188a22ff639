"""`t2m tune` on a small ChEBI-20 folder cut from the real files, with a tiny checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from datastore.testing import tiny_pairs

N_VALIDATION = 64
DEV_SIZE = 16


@pytest.fixture(scope="module")
def small_chebi(shared_data, tmp_path_factory):
    """A ChEBI-20 folder (first 64 validation rows, first 8 test rows), a tiny checkpoint, its store."""
    from t2m.knn.store import build_task_datastore

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("chebi")
    data = folder / "chebi20"
    data.mkdir()
    for name, rows in (("validation.txt", N_VALIDATION), ("test.txt", 8)):
        lines = (shared_data / "chebi20" / name).read_text(encoding="utf-8").splitlines()[: rows + 1]
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer, model, _, _ = tiny_pairs(data / "validation.txt", N_VALIDATION, "SMILES", "description")
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    store = build_task_datastore(folder / "model", "mol2text", folder / "store", data, dev_size=DEV_SIZE,
                                 index_factory="Flat", batch_size=8, progress=False)
    return folder, data, store


def test_teacher_forced_scores_match_their_definition(small_chebi):
    """λ = 0 scores the model's own mean log-likelihood; λ = 1, k = 1 on the store's training pairs
    retrieves every reference token (log-likelihood ~ 0)."""
    from datastore.build import PairBatches
    from t2m.data import training_records
    from t2m.knn.store import encode_pairs
    from datastore.store import Datastore
    from datastore.params import KNNParams
    from t2m.knn.tune import teacher_forced_scores
    from t2m.model.checkpoint import load_model

    folder, data, store_dir = small_chebi
    model, tokenizer, info = load_model(folder / "model")
    store = Datastore.load(store_dir, model=model, tokenizer=tokenizer)
    records, _ = training_records(data, dev_size=DEV_SIZE)
    encode = lambda s, t: encode_pairs(tokenizer, s, t, task="mol2text", prompt_style=info.prompt_style,  # noqa
                                        max_source_len=512, max_target_len=512)
    batches = PairBatches(encode, [r["smiles"] for r in records[:8]], [r["description"] for r in records[:8]], 4)
    scores, _ = teacher_forced_scores(model, store, batches, [KNNParams(1, 0.0, 1.0), KNNParams(1, 1.0, 1.0)],
                                      store.retriever(), progress=False)
    losses, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(len(batches)):
            batch = batches[i]
            n = int((batch["labels"] != -100).sum())
            losses += float(model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss) * n
            tokens += n
    assert scores[0] == pytest.approx(-losses / tokens, rel=1e-4)
    assert scores[1] == pytest.approx(0.0, abs=1e-3)


def test_teacher_forced_scores_with_each_rows_nearest_pair(small_chebi):
    """Restricted to each training source's nearest pair (itself), λ = 1, k = 1 retrieves every
    reference token from the row's own entries (log-likelihood ~ 0), and the restricted search gives the
    same neighbours as restricting and searching one input at a time."""
    from datastore.build import PairBatches
    from t2m.data import training_records
    from t2m.knn.store import encode_pairs
    from datastore.store import Datastore
    from datastore.params import KNNParams
    from t2m.knn.tune import retrieval_scopes, scopes_teacher_forced_scores, teacher_forced_scores
    from t2m.model.checkpoint import load_model

    folder, data, store_dir = small_chebi
    model, tokenizer, info = load_model(folder / "model")
    store = Datastore.load(store_dir, model=model, tokenizer=tokenizer)
    records, _ = training_records(data, dev_size=DEV_SIZE)
    sources, targets = [r["smiles"] for r in records[:8]], [r["description"] for r in records[:8]]
    scopes = retrieval_scopes(store, sources, [1, 0])
    assert sorted(scopes) == [0, 1] and scopes[0][1] is None
    retriever, pair_rows = scopes[1]
    assert [int(rows[0]) for rows in pair_rows] == list(range(8))  # each training source finds itself
    encode = lambda s, t: encode_pairs(tokenizer, s, t, task="mol2text", prompt_style=info.prompt_style,  # noqa
                                        max_source_len=512, max_target_len=512)
    batches = PairBatches(encode, sources, targets, 4)
    scores, d1 = teacher_forced_scores(model, store, batches, [KNNParams(1, 1.0, 1.0, 1)], retriever,
                                       progress=False, pair_rows=pair_rows)
    assert scores[0] == pytest.approx(0.0, abs=1e-3)
    assert d1 == pytest.approx(0.0, abs=1e-3)

    # both scopes from one forward pass per batch give what each scope gives alone
    grid = [KNNParams(k, lambda_, t) for k in (1, 4) for lambda_ in (0.0, 0.3, 1.0) for t in (1.0, 10.0)]
    whole = (grid, scopes[0][0], None)
    restricted = ([KNNParams(c.k, c.lambda_, c.temperature, 1) for c in grid], retriever, pair_rows)
    together = scopes_teacher_forced_scores(model, store, batches, [whole, restricted], progress=False)
    for (scope_scores, scope_d1), scope in zip(together, (whole, restricted)):
        alone, alone_d1 = teacher_forced_scores(model, store, batches, scope[0], scope[1], progress=False,
                                                pair_rows=scope[2])
        assert scope_scores == pytest.approx(alone, abs=1e-9) and scope_d1 == pytest.approx(alone_d1)
    assert together[0][0][0] == pytest.approx(together[1][0][0])  # λ = 0: the model alone in either scope


def test_every_retrieval_scope_gets_a_finalist_however_unlikely():
    from datastore.params import KNNParams
    from t2m.knn.tune import finalist_picks

    grid = [KNNParams(k, lam, 0.1, pairs) for pairs in (0, 4, 1) for k in (4, 8) for lam in (0.5, 0.8)]
    # the whole store likeliest everywhere, then the 4-pair scope, the 1-pair scope last
    scores = [-0.3 - 0.01 * i for i in range(len(grid))]
    picks = finalist_picks(grid, scores, 4)
    assert picks[:3] == [grid[0], grid[4], grid[8]]  # each scope's likeliest, scopes in the grid's order
    assert picks[3] == grid[1]  # then the likeliest of the rest
    assert finalist_picks(grid, scores, 1) == picks[:3]  # never fewer than one per scope
    assert finalist_picks(grid[:4], scores[:4], 2) == grid[:2]  # one scope: the likeliest, as before
    shuffled = [scores[i] if i != 7 else 0.0 for i in range(len(grid))]  # a 4-pair point becomes likeliest
    assert finalist_picks(grid, shuffled, 3) == [grid[0], grid[7], grid[8]]


def test_tune_over_retrieval_scopes_writes_the_chosen_one(small_chebi, tmp_path):
    import shutil

    from datastore.store import Datastore
    from t2m.knn.tune import tune

    folder, data, store_dir = small_chebi
    copy = tmp_path / "store"
    shutil.copytree(store_dir, copy)
    result = tune(copy, folder / "model", data, lambdas=(0.5, 1.0), ks=(1, 4), temperatures=(1.0,), pairs=(2, 0),
                  finalists=8, batch_size=8, max_new_tokens=24, progress=False)
    assert len(result.finalists) == 9  # the model alone and all 8 grid points: 2 k x 2 λ x 2 scopes
    assert sorted(row["pairs"] for row in result.finalists[1:]) == [0] * 4 + [2] * 4
    best = max(result.finalists[1:], key=lambda row: row["bleu4"])
    assert result.chosen_metric["bleu4"] == max(best["bleu4"], result.model_only_metric["bleu4"])
    chosen = Datastore.load(copy).knn_params
    assert (chosen.pairs or 0) == result.chosen.pairs
    meta = json.loads((copy / "datastore.json").read_text())
    assert set(meta["knn"]["median_nearest_sq_distance_by_pairs"]) == {"0", "2"}
    # restricted neighbours are never nearer than the whole store's
    by_pairs = meta["knn"]["median_nearest_sq_distance_by_pairs"]
    assert by_pairs["2"] >= by_pairs["0"]


def test_tune_writes_its_choice_into_the_store(small_chebi):
    from datastore.store import Datastore
    from t2m.knn.tune import tune

    folder, data, store_dir = small_chebi
    result = tune(store_dir, folder / "model", data, lambdas=(0.5, 1.0), ks=(1, 4), finalists=2, batch_size=8,
                  max_new_tokens=24, progress=False)
    assert result.dev_rows == DEV_SIZE
    assert len(result.finalists) == 3  # the model alone + 2 finalists, each with its BLEU-4
    assert all("bleu4" in row for row in result.finalists)
    meta = json.loads((store_dir / "datastore.json").read_text())
    chosen = Datastore.load(store_dir).knn_params
    assert (chosen.k, chosen.lambda_, chosen.temperature) == (result.chosen.k, result.chosen.lambda_,
                                                             result.chosen.temperature)
    assert meta["knn"]["source"].startswith("t2m tune on 16 dev rows")
    assert meta["knn"]["dev_metric"] == result.chosen_metric
    assert result.chosen_metric["bleu4"] >= result.model_only_metric["bleu4"]


def test_dev_metric_orders_text2mol_by_morgan_fts_over_all_rows_then_exact_match(shared_data):
    from t2m.knn.tune import dev_metric

    refs = ["CCO", "c1ccccc1O"]
    exact_one, values = dev_metric("text2mol", refs, ["OCC", "CCCC"])  # OCC is CCO written differently
    assert values["exact_match"] == 0.5 and values["morgan_fts_all_rows"] == pytest.approx(0.5)
    closer, _ = dev_metric("text2mol", refs, ["CCCO", "c1ccccc1"])
    assert exact_one > closer  # here the exact match is also the higher similarity
    better_fts, _ = dev_metric("text2mol", refs, ["OCC", "c1ccccc1"])
    assert better_fts > exact_one  # same exact match, higher Morgan similarity
    # an unparsable output counts 0: a perfect half beats a fair whole only when it is better overall
    half, values = dev_metric("text2mol", refs, ["CCO", "(("])
    assert values["morgan_fts"] == 1.0 and values["validity"] == 0.5 and half[0] == pytest.approx(0.5)
    assert better_fts > half
    key, values = dev_metric("mol2text", ["The molecule is an alcohol."], ["The molecule is an alcohol."])
    assert key == (values["bleu4"],) and values["bleu4"] == pytest.approx(1.0)


def test_dev_metric_ranks_unparsable_outputs_last():
    from t2m.knn.tune import dev_metric

    none_parse, _ = dev_metric("text2mol", ["CCO", "c1ccccc1"], ["C(", "(("])
    some_parse, _ = dev_metric("text2mol", ["CCO", "c1ccccc1"], ["CCN", "(("])
    assert none_parse[0] == 0.0
    assert max([none_parse, some_parse]) == some_parse


def test_tuning_decodes_as_translator_does(small_chebi):
    """One decoding path: tune's decode (the bench's λ sweep) gives Translator.translate's outputs -- with kNN,
    with a restricted retrieval scope, and for text2mol with beam search and valid-SMILES reranking."""
    from datastore.store import Datastore
    from t2m.decoding.translator import Translator
    from t2m.data import training_records
    from t2m.options import DecodingOptions, RetrievalOptions
    from datastore.params import KNNParams
    from t2m.knn.tune import decode, retrieval_scopes

    folder, data, store_dir = small_chebi
    translator = Translator.from_pretrained(folder / "model")
    store = Datastore.load(store_dir, model=translator.model, tokenizer=translator.tokenizer)
    records, _ = training_records(data, dev_size=DEV_SIZE)
    for task, sources, cand, pairs in (
            ("mol2text", [r["smiles"] for r in records[:5]], KNNParams(4, 0.5, store.knn_params.temperature), 0),
            ("mol2text", [r["smiles"] for r in records[:5]], KNNParams(2, 0.7, store.knn_params.temperature, 2), 2),
            ("text2mol", [r["description"] for r in records[:5]], None, 0)):
        retrieval = None if cand is None else RetrievalOptions(store, cand)
        want = translator.translate(sources, task, DecodingOptions(num_beams=3, max_new_tokens=10), retrieval=retrieval)
        retriever, pair_rows = retrieval_scopes(store, sources, [pairs])[pairs] if cand is not None else (None, None)
        got = decode(translator.model, translator.tokenizer, store, translator.model_inputs(sources, task), task,
                     translator.info.prompt_style, cand, retriever, num_beams=3, max_new_tokens=10, progress=False,
                     pair_rows=pair_rows)
        assert got == [t.output for t in want], (task, cand)
