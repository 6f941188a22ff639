"""Retrieval-augmented inputs: neighbour lookup, conditioned training, the copy head, and checkpoints that
know their inputs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from t2m.neighbours.database import (Neighbour, NeighbourDatabase, NeighbourFormat, conditioned_source,
                            draw_neighbours, training_neighbours)
from t2m.chem import canonical_smiles
from t2m.options import DecodingOptions
from t2m.tasks import MOL2TEXT, TEXT2MOL


@pytest.fixture(scope="module")
def validation_rows(shared_data):
    from t2m.data import read_tsv_records

    return read_tsv_records(shared_data / "chebi20" / "validation.txt")[:300]


@pytest.mark.parametrize("task", [MOL2TEXT, TEXT2MOL])
def test_training_neighbours_never_the_row_itself_nor_its_molecule(validation_rows, task):
    rows = list(validation_rows)
    # a duplicate molecule under another CID (and another SMILES spelling) must not be shown either
    duplicate = dict(rows[5], cid="dup", smiles=canonical_smiles(rows[5]["smiles"]))
    rows.append(duplicate)
    database = NeighbourDatabase.from_records(rows)
    found = training_neighbours(database, rows, task, pool=4)
    assert len(found) == len(rows)
    keys = database.molecule_keys()
    for i, neighbours in enumerate(found):
        assert len(neighbours) == 4
        for n in neighbours:
            assert n.row != i
            assert keys[n.row] != keys[i]
        sims = [n.similarity for n in neighbours]
        assert sims == sorted(sims, reverse=True)
    # rows 5 and the duplicate are the same molecule: neither sees the other
    assert all(n.row not in (5, len(rows) - 1) for n in found[5] + found[-1])
    # at test time (no exclusion) a query that is in the database finds itself first
    query = rows[7]["smiles"] if task == MOL2TEXT else rows[7]["description"]
    assert database.search([query], task, 1)[0][0].row == 7


def test_conditioned_source_layout_and_draws():
    n = [Neighbour(3, 0.8123, "CCO", "The molecule is ethanol."), Neighbour(9, 0.5, "CCN", "An amine.")]
    text = conditioned_source("CCCO", MOL2TEXT, n[:1])
    assert text == "CCCO || 0.81 CCO => The molecule is ethanol."
    assert conditioned_source("CCCO", MOL2TEXT, n[:1], show_similarity=False) == "CCCO || CCO => The molecule is ethanol."
    rng = random.Random(0)
    draws = {tuple(x.row for x in draw_neighbours(n, 1, rng, p_nearest=0.0)) for _ in range(50)}
    assert draws == {(3,), (9,)}
    assert draw_neighbours(n, 1, rng, p_nearest=1.0) == n[:1]
    with pytest.raises(ValueError, match="k"):
        NeighbourFormat(k=0)


def test_copy_head_mixture_is_a_distribution_and_copies():
    import torch

    from t2m.model.copy_head import mix_copy

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 10)
    weights = torch.softmax(torch.randn(2, 3, 4), dim=-1)
    source = torch.tensor([[5, 6, 5, 1], [2, 2, 2, 2]])
    # gate fully open: all mass on the source tokens, summed per token
    log_p = mix_copy(logits, weights, torch.full((2, 3), 30.0), source)
    p = log_p.exp()
    assert torch.allclose(p.sum(-1), torch.ones(2, 3), atol=1e-4)
    assert torch.allclose(p[0, :, 5], weights[0, :, 0] + weights[0, :, 2], atol=1e-4)
    assert torch.allclose(p[1, :, 2], torch.ones(3), atol=1e-4)
    # gate closed: the vocabulary distribution
    log_p = mix_copy(logits, weights, torch.full((2, 3), -30.0), source)
    assert torch.allclose(log_p.exp(), torch.softmax(logits, -1), atol=1e-4)


def _neighbour_config(tiny_chebi20, tiny_tokenizer_dir, out, **kw):
    from t2m.training.trainer import TrainConfig

    base = dict(out_dir=str(out), data_dir=str(tiny_chebi20), setting="benchmark", dev_size=20,
                tokenizer=str(tiny_tokenizer_dir), preset="cpu-tiny", batch_size=8, max_source_len=256,
                max_target_len=96, max_steps=3, warmup_steps=1, log_every=1, eval_every=3, save_every=3,
                quick_eval_rows=2, lr=3e-3, threads=1, neighbours=1, copy_head=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def neighbour_checkpoint(tiny_chebi20, tiny_tokenizer_dir, tmp_path_factory):
    """A tiny copy-head T5 trained 3 steps with one neighbour in its inputs, and neighbour rankers fitted on
    its training pairs (config "ranker")."""
    from t2m.data import load_chebi20_records
    from t2m.neighbours.ranker import fit_rankers
    from t2m.training.trainer import train

    out = tmp_path_factory.mktemp("neighbour_run")
    train_rows = load_chebi20_records(tiny_chebi20, "benchmark", dev_size=20).train
    fit_rankers(NeighbourDatabase.from_records(train_rows), out / "fitted_ranker.json", progress=False)
    config = _neighbour_config(tiny_chebi20, tiny_tokenizer_dir, out, ranker=str(out / "fitted_ranker.json"))
    return config, train(config)


def test_training_examples_carry_neighbours_never_their_own_pair(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    from t2m.training.data import epoch_examples, load_training_data

    config = _neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path)
    data = load_training_data(config, tmp_path)
    examples = epoch_examples(data, config, epoch=0)
    assert len(examples) == 2 * len(data.train)
    for i, row in enumerate(data.train):
        text2mol, mol2text = examples[2 * i][0], examples[2 * i + 1][0]
        assert text2mol.startswith("Write in SMILES the described molecule: " + row["description"] + " || ")
        assert mol2text.startswith("Caption the following SMILES: ") and " || " in mol2text
        # its own target never appears as the neighbour's target
        assert not text2mol.endswith(" => " + row["smiles"])
        assert not mol2text.endswith(" => " + row["description"])
    assert (tmp_path / "neighbours.json").is_file()  # cached for the next start


def test_copied_share_counts_output_ngrams_found_in_the_neighbours_targets():
    from t2m.neighbours.database import Neighbour, copied_share

    shown = [Neighbour(0, 0.9, "CCO", "The molecule is an alcohol that is ethane substituted by a hydroxy group.")]
    # all 4-grams copied; none copied; a 3-word output has no 4-gram and counts nothing
    assert copied_share(["The molecule is an alcohol that is"], [shown], MOL2TEXT) == 1.0
    assert copied_share(["A ketone bearing two methyl groups here."], [shown], MOL2TEXT) == 0.0
    mixed = "The molecule is an alcohol bearing two methyl groups."  # 6 4-grams, the first 2 copied
    assert copied_share([mixed, "Too short here"], [shown, shown], MOL2TEXT) == 2 / 6
    smiles = [Neighbour(0, 0.8, "an acid", "CC(=O)OC1=CC=CC=C1C(=O)O")]
    assert copied_share(["CC(=O)OC1=CC=CC=C1C(=O)O"], [smiles], TEXT2MOL) == 1.0
    assert copied_share(["NNNNNNNNN"], [smiles], TEXT2MOL) == 0.0
    assert math.isnan(copied_share(["CCO"], [smiles], TEXT2MOL))


def test_training_logs_how_much_the_model_copies(neighbour_checkpoint):
    config, _ = neighbour_checkpoint
    log = [json.loads(line) for line in (Path(config.out_dir) / "train_log.jsonl").read_text().splitlines()]
    evaluated = [r for r in log if "dev_bleu4" in r]
    assert evaluated
    for task in (TEXT2MOL, MOL2TEXT):
        gold = evaluated[-1][f"dev_gold_copied_{task}"]
        assert 0.0 < gold <= 1.0  # ChEBI-20 references share n-grams with their nearest pair's target
        copied = evaluated[-1][f"dev_copied_{task}"]
        assert math.isnan(copied) or 0.0 <= copied <= 1.0
        for measure in ("changed_where_gold_changed", "kept_where_gold_kept"):
            value = evaluated[-1][f"dev_{measure}_{task}"]
            assert math.isnan(value) or 0.0 <= value <= 1.0


def test_checkpoint_knows_its_inputs_after_save_and_load(neighbour_checkpoint):
    import torch

    from t2m.model.copy_head import T5CopyForConditionalGeneration
    from t2m.decoding.translator import Translator
    from t2m.training.data import load_training_data

    config, final = neighbour_checkpoint
    meta = json.loads((final / "t2m.json").read_text())
    assert meta["neighbours"] == {"k": 1, "show_similarity": True, "database": "memory.tsv", "ranker": "ranker.json"}
    assert meta["decoding"] == {"text2mol": {"no_repeat_ngram_size": 8}, "mol2text": {"no_repeat_ngram_size": 3}}
    assert meta["training_data"]["sizes"]["train"] == 140 and "validation.txt" in meta["training_data"]["files"]
    translator = Translator.from_pretrained(final)
    assert isinstance(translator.model, T5CopyForConditionalGeneration)
    assert len(translator.database) == 140
    data = load_training_data(config, Path(config.out_dir))
    # without its rankers, the translator writes dev inputs exactly as training wrote them (nearest pair)
    assert set(translator.database.rankers) == {TEXT2MOL, MOL2TEXT}
    translator.database.use_rankers({})
    for task in (TEXT2MOL, MOL2TEXT):
        texts = [r["description"] if task == TEXT2MOL else r["smiles"] for r in data.dev[:5]]
        assert translator.model_inputs(texts, task) == [data.source(i, task, split="dev") for i in range(5)]
    # the copy head's weights survive the round trip
    reloaded = Translator.from_pretrained(final).model
    assert torch.equal(reloaded.copy_head.query.weight, translator.model.copy_head.query.weight)
    results = translator.translate([data.dev[0]["smiles"]], MOL2TEXT, DecodingOptions(num_beams=2, max_new_tokens=8))
    assert results[0].neighbours and results[0].neighbours[0].target == data.train[results[0].neighbours[0].row]["description"]
    assert "neighbours" in results[0].to_dict()
    # another database replaces the memory
    other = NeighbourDatabase.from_records(data.train[:10])
    assert Translator.from_pretrained(final, database=other).neighbours([data.dev[0]["smiles"]], MOL2TEXT)[0][0].row < 10


def test_a_trained_checkpoint_translates_as_the_shipped_one(neighbour_checkpoint, tiny_chebi20, tmp_path):
    """What t2m train saves carries what translating needs (decoding defaults, memory, rankers): with no
    decoding option given, it translates 20 rows exactly as the same weights after `t2m ship` do."""
    from t2m.data import read_tsv_records
    from t2m.decoding.translator import Translator
    from t2m.recipes.ship_default_model import copy_model

    config, final = neighbour_checkpoint
    shipped = tmp_path / "shipped"
    copy_model(final.parent, shipped, keep_float32=True)  # as `t2m ship RUN --keep-float32` copies it
    trained, ready = Translator.from_pretrained(final), Translator.from_pretrained(shipped)
    rows = read_tsv_records(tiny_chebi20 / "test.txt")[:20]
    for task, texts in ((MOL2TEXT, [r["smiles"] for r in rows]), (TEXT2MOL, [r["description"] for r in rows])):
        assert trained.decoding_options(task) == ready.decoding_options(task) != {}
        assert trained.database.rankers[task].trees == ready.database.rankers[task].trees
        ours = trained.translate(texts, task, DecodingOptions(max_new_tokens=16))
        theirs = ready.translate(texts, task, DecodingOptions(max_new_tokens=16))
        assert [r.output for r in ours] == [r.output for r in theirs]
        assert [[n.row for n in r.neighbours] for r in ours] == [[n.row for n in r.neighbours] for r in theirs]


def test_training_rankers_are_checked_against_the_training_pairs(neighbour_checkpoint, tiny_chebi20,
                                                                 tiny_tokenizer_dir, tmp_path):
    """A run takes the config's rankers only when fitted on its training pairs, else those of init_from when
    they are, else none, and says so."""
    from t2m.neighbours.ranker import fit_rankers
    from t2m.training.trainer import training_rankers
    from t2m.training.data import load_training_data

    config, final = neighbour_checkpoint
    data = load_training_data(config, Path(config.out_dir))
    said: list[str] = []
    fresh = _neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path, init_from=str(final))
    assert set(training_rankers(fresh, data, said.append)) == {MOL2TEXT, TEXT2MOL}
    assert said and "checkpoints carry the neighbour rankers of" in said[0]
    other = tmp_path / "other.json"
    fit_rankers(NeighbourDatabase.from_records(data.train[:60]), other, progress=False)
    with pytest.raises(ValueError, match="ranker was fitted on 60 other pairs .*, not these 140 training pairs"):
        training_rankers(_neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path, ranker=str(other)), data)
    said.clear()
    assert training_rankers(_neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path), data, said.append) is None
    assert "checkpoints translate without a neighbour ranker (none fitted on these 140 training pairs)" in said[0]
    assert training_rankers(_neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path, neighbours=0), data) is None


def test_training_neighbours_are_cached_under_the_pairs_digest(tiny_chebi20, tiny_tokenizer_dir, tmp_path,
                                                              monkeypatch):
    """The second start reads the neighbours from the cache (no search); other counts search anew."""
    from t2m.training import data as training_data
    from t2m.training.data import NEIGHBOUR_CACHE, load_training_data

    config = _neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path)
    first = load_training_data(config, tmp_path)
    cached = json.loads((tmp_path / NEIGHBOUR_CACHE).read_text())
    assert cached["key"]["train"] == NeighbourDatabase.from_records(first.train).digest()
    assert all(isinstance(row, int) and isinstance(sim, float) for row, sim in cached["train-text2mol"][0])

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(training_data, "training_neighbours", no_search)  # the name training/data.py calls
    again = load_training_data(config, tmp_path)
    assert again.train_neighbours == first.train_neighbours and again.dev_neighbours == first.dev_neighbours
    with pytest.raises(AssertionError, match="searched again"):
        load_training_data(_neighbour_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path, neighbour_pool=3), tmp_path)


def test_plain_checkpoints_read_no_neighbours(tiny_model_dir):
    from t2m.decoding.translator import Translator

    translator = Translator.from_pretrained(tiny_model_dir)
    assert translator.neighbour_format is None and translator.database is None
    assert translator.model_inputs(["CCO"], MOL2TEXT) == ["Caption the following SMILES: CCO"]


def test_conditioned_datastore_build_and_translate_on_20_rows(neighbour_checkpoint, tiny_chebi20, tmp_path):
    from datastore.store import Datastore
    from t2m.data import read_tsv_records
    from datastore.params import PartialKNNParams
    from t2m.decoding.translator import Translator
    from t2m.knn.store import build_task_datastore
    from t2m.options import RetrievalOptions

    config, final = neighbour_checkpoint
    out = build_task_datastore(final, MOL2TEXT, tmp_path / "store", tiny_chebi20, setting="benchmark", dev_size=20,
                               batch_size=16, progress=False)
    store = Datastore.load(out)
    assert store.meta["data"]["neighbours"]["k"] == 1 and store.meta["data"]["neighbours"]["database_rows"] == 140
    translator = Translator.from_pretrained(final)
    rows = [r["smiles"] for r in read_tsv_records(tiny_chebi20 / "test.txt")[:20]]
    twelve = DecodingOptions(max_new_tokens=12)
    plain = translator.translate(rows, MOL2TEXT, twelve)
    mixed = translator.translate(rows, MOL2TEXT, twelve, retrieval=RetrievalOptions(store, PartialKNNParams(k=4, lambda_=0.5)))
    off = translator.translate(rows, MOL2TEXT, twelve, retrieval=RetrievalOptions(store, PartialKNNParams(k=4, lambda_=0.0)))
    assert len(mixed) == 20 and all(r.neighbours for r in mixed)
    assert [r.output for r in off] == [r.output for r in plain]  # λ = 0 decodes the same conditioned inputs
    assert [r.neighbours for r in mixed] == [r.neighbours for r in plain]


def test_shipped_pipeline_runs_offline_on_its_memory(monkeypatch):
    """The README's first command: the shipped model reads its neighbours from the memory inside the package,
    with no network and no data folder."""
    from t2m.decoding.translator import Translator
    from t2m.model.checkpoint import default_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("T2M_SHARED_DATA", "/nonexistent")
    translator = Translator.from_pretrained()
    if translator.neighbour_format is None:
        pytest.skip("the shipped model reads no neighbours")
    assert Path(translator.database.name).parent == default_model_dir()
    out = translator.translate(["CC(=O)OC1=CC=CC=C1C(=O)O"], MOL2TEXT, DecodingOptions(max_new_tokens=24))[0]
    assert out.output and out.neighbours and out.neighbours[0].similarity > 0
    out = translator.translate(["The molecule is a monocarboxylic acid that is acetic acid."], TEXT2MOL,
                               DecodingOptions(max_new_tokens=24))[0]
    assert out.neighbours
    # what t2m translate runs by default (t2m.json "system"): retrieval answers from the same memory
    for task, query in ((MOL2TEXT, "CC(=O)OC1=CC=CC=C1C(=O)O"), (TEXT2MOL, "The molecule is an acetate ester.")):
        assert translator.info.default_system(task) in ("model", "retrieval")
        found = translator.retrieve([query], task)[0]
        assert found.output == found.neighbours[0].target and found.output in (translator.database.descriptions
                                                                              + translator.database.smiles)


def test_translate_cli_shows_neighbours_and_reads_another_database(neighbour_checkpoint, tiny_chebi20, tmp_path):
    import subprocess
    import sys

    from t2m.data import read_tsv_records, write_records_tsv

    _, final = neighbour_checkpoint
    records = read_tsv_records(tiny_chebi20 / "validation.txt")
    other = tmp_path / "other.tsv"
    write_records_tsv(other, records[150:155])  # dev rows: not in the model's memory
    inputs = tmp_path / "in.txt"
    inputs.write_text(records[150]["smiles"] + "\n" + records[3]["smiles"] + "\n")
    out = tmp_path / "out.tsv"
    run = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(final),
                          "--input", str(inputs), "--output", str(out), "--max-new-tokens", "6", "--show-neighbours",
                          "--database", str(other)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    output, similarity, neighbour = lines[0].split("\t")
    assert float(similarity) == 1.0 and neighbour == records[150]["description"]  # found itself in the other database
    assert lines[1].split("\t")[2] in {r["description"] for r in records[150:155]}


def test_translation_neighbours_survive_json_as_resumed_runs_read_them():
    from t2m.decoding.translator import Translation

    shown = [Neighbour(3, 0.8123, "CCO", "The molecule is ethanol.")]
    kept = json.loads(json.dumps(Translation("CCCO", "out", ["out"], None, [], shown).to_dict()))
    assert [Neighbour(**n) for n in kept["neighbours"]] == shown


def test_translate_system_retrieval_answers_with_the_ranked_pairs_targets(neighbour_checkpoint, tiny_chebi20, tmp_path,
                                                                          tiny_model_dir):
    import subprocess
    import sys

    from t2m.data import read_tsv_records
    from t2m.decoding.translator import Translator
    from t2m.neighbours.ranker import fit_ranker

    _, final = neighbour_checkpoint
    translator = Translator.from_pretrained(final)
    records = read_tsv_records(tiny_chebi20 / "validation.txt")
    queries = [records[150]["smiles"], "", records[154]["smiles"]]
    found = translator.retrieve(queries, MOL2TEXT, n_best=2)
    nearest = translator.database.search([queries[0], queries[2]], MOL2TEXT, 2)
    assert [found[0].candidates, found[2].candidates] == [[n.target for n in row] for row in nearest]
    assert found[0].output == nearest[0][0].target and found[0].neighbours == nearest[0]
    assert found[1].output == "" and found[1].flags  # the empty row is flagged, the others answered
    # with a ranker the answer is the ranked first pair
    translator.database.use_rankers({MOL2TEXT: fit_ranker(translator.database, MOL2TEXT, pool=4)})
    ranked = translator.retrieve([queries[2]], MOL2TEXT)[0]
    assert ranked.output == translator.database.search([queries[2]], MOL2TEXT, 1)[0][0].target
    with pytest.raises(ValueError, match="no neighbour database"):
        Translator.from_pretrained(tiny_model_dir).retrieve(["CCO"], MOL2TEXT)
    # without the model's weights: the same answers; decoding is refused with the way to load the model
    light = Translator.for_retrieval(final)
    assert light.model is None and [r.output for r in light.retrieve(queries, MOL2TEXT, n_best=2)] == \
        [r.output for r in found]
    with pytest.raises(ValueError, match="loaded for retrieval only"):
        light.translate(["CCO"], MOL2TEXT)
    # the command line: --system retrieval, --n-best from the next pairs; --knn refused before loading
    run = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(final),
                          "--system", "retrieval", "--n-best", "2", queries[0]], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split("\t")[:2] == [n.target for n in nearest[0]]
    refused = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(final),
                              "--system", "retrieval", "--knn", str(tmp_path), "CCO"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--system retrieval" in refused.stderr


def test_translate_runs_the_checkpoints_default_system(neighbour_checkpoint, tmp_path):
    """t2m.json "system" decides what `t2m translate` runs when --system is not given; --knn and
    --system model run the T5; a bad entry is refused naming the file."""
    import shutil
    import subprocess
    import sys

    from t2m.decoding.translator import Translator
    from t2m.model.checkpoint import read_checkpoint_info
    from t2m.options import DecodingOptions
    from t2m.errors import OptionError
    from t2m.translate_job import TranslateJob, resolve_system

    _, final = neighbour_checkpoint
    model = tmp_path / "model"
    shutil.copytree(final, model)
    meta = json.loads((model / "t2m.json").read_text())
    assert read_checkpoint_info(model).default_system(MOL2TEXT) == "model"  # no entry: the T5, as before
    (model / "t2m.json").write_text(json.dumps({**meta, "system": {MOL2TEXT: "retrieval"}}))
    info = read_checkpoint_info(model)
    assert (info.default_system(MOL2TEXT), info.default_system("text2mol")) == ("retrieval", "model")
    job = TranslateJob(task=MOL2TEXT, texts=["CCO"], model=str(model))
    assert resolve_system(job, model).system == "retrieval"
    assert resolve_system(TranslateJob(task=MOL2TEXT, texts=["CCO"], knn="store"), model).system == "model"
    with pytest.raises(OptionError, match="num_return_sequences=3 needs num_beams=3 or more"):
        resolve_system(TranslateJob(task=MOL2TEXT, texts=["CCO"], system="model",
                                    decoding=DecodingOptions(num_return_sequences=3)), model)
    translator = Translator.from_pretrained(model)
    query = translator.database.smiles[7]
    expected = translator.retrieve([query], MOL2TEXT)[0].output
    by_default = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(model),
                                 "--max-new-tokens", "4", "--num-beams", "2", query], capture_output=True, text=True)
    assert by_default.returncode == 0, by_default.stderr
    assert by_default.stdout.strip() == expected  # the pair's caption: no model
    assert "default system for mol2text is retrieval (no model), which does not decode" in by_default.stderr
    by_model = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(model),
                               "--system", "model", "--max-new-tokens", "4", query], capture_output=True, text=True)
    assert by_model.returncode == 0 and by_model.stdout.strip() != expected  # 4 tokens of the T5
    (model / "t2m.json").write_text(json.dumps({**meta, "system": {MOL2TEXT: "lookup"}}))
    bad = subprocess.run([sys.executable, "-m", "t2m", "translate", "--task", "mol2text", "--model", str(model),
                          "CCO"], capture_output=True, text=True)
    assert bad.returncode == 2 and "t2m.json" in bad.stderr and "'lookup' is not one of model, retrieval" in bad.stderr
    no_database = {k: v for k, v in meta.items() if k != "neighbours"}
    (model / "t2m.json").write_text(json.dumps({**no_database, "system": {MOL2TEXT: "retrieval"}}))
    with pytest.raises(ValueError, match="retrieval needs a neighbour database"):
        read_checkpoint_info(model)
