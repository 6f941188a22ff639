"""The default-model card: measuring one task again keeps the other task's sections as they were."""

from __future__ import annotations

from t2m.model.checkpoint import default_model_dir
from t2m.recipes.ship_default_model import kept_sections, model_card

CARD = """# t2m default model

## Scores on ChEBI-20 test, as `t2m eval` prints them

### text2mol, greedy, all 3300 test rows

old text2mol greedy

### mol2text, greedy, all 3300 test rows

translation: 14.78 inputs/s

```
mol2text greedy table
```

### mol2text, beam 5, all 3300 test rows

mol2text beam table
"""


def test_kept_sections_are_the_other_tasks_in_order():
    kept = kept_sections(CARD, ("text2mol",))
    assert [k.splitlines()[0] for k in kept] == ["### mol2text, greedy, all 3300 test rows",
                                                  "### mol2text, beam 5, all 3300 test rows"]
    assert "mol2text greedy table" in kept[0] and "old text2mol" not in "".join(kept)
    assert kept_sections(CARD, ("text2mol", "mol2text")) == []


def test_card_with_one_task_measured_again_carries_the_other_over(tmp_path):
    results = {"text2mol_beam1": {"json": {"n": 3300}, "seconds": 660.0, "table": "new text2mol table",
                                  "workers": 2, "machine": "AMD EPYC, AVX2, 2 cores"}}
    card = model_card(default_model_dir(), tmp_path, results, kept=kept_sections(CARD, ("text2mol",)))
    assert "### text2mol, greedy (SMILES syntax and valence constraints on), all 3300 test rows" in card
    assert "5.00 inputs/s (660 s for 3300 rows, 2 one-thread worker processes on AMD EPYC, AVX2, 2 cores)" in card
    assert card.index("new text2mol table") < card.index("carried over") < card.index("mol2text beam table")
    assert "old text2mol greedy" not in card


def test_card_reports_mean_tokens_per_smiles_and_description(shared_data, tmp_path):
    from t2m.recipes.ship_default_model import mean_token_lengths

    lengths = mean_token_lengths(default_model_dir(), shared_data / "chebi20")
    assert 30 < lengths["smiles"] < lengths["description"] < 200  # the shipped tokenizer: 63.7 and 86.2
    card = model_card(default_model_dir(), tmp_path, {}, token_lengths=lengths)
    assert f"- tokens: mean {lengths['smiles']} per SMILES, {lengths['description']} per description" in card


def test_ship_makes_the_best_benched_system_the_default(tmp_path):
    """t2m ship --from-bench: the system t2m translate runs by default is the best of the model and
    retrieval on the bench's choice metrics, per task, written to t2m.json and the model card."""
    import json

    from t2m.bench.verdicts import best_default_system
    from t2m.recipes.ship_default_model import default_systems_from_bench, set_default_systems, system_lines

    systems = {"model": {"metrics": {"bleu4": 0.30, "meteor": 0.45, "morgan_fts": 0.50, "maccs_fts": 0.70}},
               "retrieval": {"metrics": {"bleu4": 0.36, "meteor": 0.48, "morgan_fts": 0.45, "maccs_fts": 0.69}},
               "retrieval+ranker": {"metrics": {"bleu4": 0.37, "meteor": 0.50, "morgan_fts": 0.47, "maccs_fts": 0.71}}}
    best = best_default_system("mol2text", systems)
    assert best["system"] == "retrieval+ranker" and best["translate"] == "retrieval"
    assert best["scores"] == {"model": 0.375, "retrieval+ranker": 0.435}
    assert best_default_system("text2mol", systems)["translate"] == "model"  # 0.60 against 0.59
    tie = {"model": systems["model"], "retrieval": {"metrics": dict(systems["model"]["metrics"])}}
    assert best_default_system("mol2text", tie)["translate"] == "model"  # a tie goes to the model
    assert best_default_system("mol2text", {}) is None
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench.json").write_text(json.dumps({"tasks": {
        task: {"rows": 10, "headline_beam": 5, "systems": systems} for task in ("mol2text", "text2mol")}}))
    chosen = default_systems_from_bench([bench], ("mol2text", "text2mol"))
    assert {task: c["translate"] for task, c in chosen.items()} == {"mol2text": "retrieval", "text2mol": "model"}
    model = tmp_path / "model"
    model.mkdir()
    (model / "t2m.json").write_text(json.dumps({"prompt_style": "textchem", "neighbours": {"k": 1, "database": "m.tsv"}}))
    set_default_systems(model, chosen)
    meta = json.loads((model / "t2m.json").read_text())
    assert meta["system"] == {"mol2text": "retrieval", "text2mol": "model"}
    assert "mol2text: `retrieval`; text2mol: `model`" in system_lines(meta)[0]


def test_replace_memory_ships_the_pairs_file_compressed_and_records_it(shared_data, tmp_path):
    """t2m ship --memory FILE: the file's own bytes xz-compressed as memory.tsv.xz (decompressing gives the file
    back byte for byte), recorded in t2m.json with rows, sha256 and git blob id; the translator reads it; rankers
    refit on it, or taken from a file fitted on the same pairs and refused when fitted on others."""
    import hashlib
    import json
    import lzma

    import pytest

    from t2m.download import git_blob_id
    from t2m.neighbours.ranker import fit_rankers
    from t2m.neighbours.database import NeighbourDatabase, NeighbourFormat, load_checkpoint_database
    from t2m.recipes.ship_default_model import memory_lines, replace_memory

    lines = (shared_data / "chebi20" / "test.txt").read_bytes().split(b"\n")
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(b"\n".join(lines[:61]) + b"\n")  # header + 60 real rows
    model = tmp_path / "model"
    model.mkdir()
    (model / "memory.tsv").write_text("CID\tSMILES\tdescription\n1\tC\tThe molecule is methane.\n")
    (model / "t2m.json").write_text(json.dumps({"prompt_style": "textchem", "neighbours": {
        "k": 1, "show_similarity": True, "database": "memory.tsv"}}))
    record = replace_memory(model, pairs)
    raw = pairs.read_bytes()
    assert lzma.decompress((model / "memory.tsv.xz").read_bytes()) == raw
    assert record == {"source": "pairs.txt", "rows": 60, "sha256": hashlib.sha256(raw).hexdigest(),
                      "git_blob": git_blob_id(raw)}
    assert not (model / "memory.tsv").exists() and not (model / "memory.tsv.xz.tmp").exists()
    meta = json.loads((model / "t2m.json").read_text())
    assert meta["neighbours"]["database"] == "memory.tsv.xz" and meta["neighbours"]["memory"] == record
    assert meta["neighbours"]["ranker"] == "ranker.json"
    database = load_checkpoint_database(model, NeighbourFormat.from_meta(meta))
    assert len(database) == 60 and set(database.rankers) == {"mol2text", "text2mol"}
    assert database.rankers["mol2text"].fitted_on["database"] == "memory.tsv.xz"
    assert "the 60 pairs it retrieves from: `pairs.txt`" in memory_lines(meta, {"sizes": {"train": 4791}})[0]
    # rankers fitted beforehand on the same pairs are taken as they are; fitted on other pairs, refused
    fitted = tmp_path / "fitted.json"
    fit_rankers(NeighbourDatabase.from_file(pairs), fitted, progress=False)
    replace_memory(model, pairs, fitted)
    assert json.loads((model / "ranker.json").read_text())["rankers"]["text2mol"]["trees"] == \
        json.loads(fitted.read_text())["rankers"]["text2mol"]["trees"]
    other = tmp_path / "other.txt"
    other.write_bytes(b"\n".join(lines[:41]) + b"\n")
    with pytest.raises(ValueError, match="ranker was fitted on 60 other pairs .*, not these 40 of .*other.txt; fit it"):
        replace_memory(model, other, fitted)
