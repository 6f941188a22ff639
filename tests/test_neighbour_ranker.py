"""The learned choice among an input's nearest database pairs (t2m.neighbours.ranker), on real ChEBI-20 rows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from t2m.neighbours.ranker import FEATURES, NeighbourRanker, fit_ranker, load_rankers, save_rankers
from t2m.neighbours.database import NeighbourDatabase, NeighbourFormat, load_checkpoint_database, training_neighbours
from t2m.tasks import MOL2TEXT, TEXT2MOL


@pytest.fixture(scope="module")
def rows(shared_data):
    from t2m.data import read_tsv_records

    return read_tsv_records(shared_data / "chebi20" / "validation.txt")[:160]


@pytest.fixture(scope="module")
def fitted(rows):
    database = NeighbourDatabase.from_records(rows[:120], "first-120")
    return database, {task: fit_ranker(database, task, pool=6) for task in (MOL2TEXT, TEXT2MOL)}


@pytest.mark.parametrize("task", [MOL2TEXT, TEXT2MOL])
def test_ranker_fits_on_the_database_and_reorders_only_the_nearest_pool(fitted, rows, task):
    database, rankers = fitted
    ranker = rankers[task]
    assert ranker.trees and np.isfinite(ranker.baseline)
    assert ranker.fitted_on["pairs"] == 120 and ranker.fitted_on["queries"] > 100
    ranked_db = NeighbourDatabase.from_records(rows[:120]).use_rankers({task: NeighbourRanker.from_dict(ranker.to_dict())})
    queries = [r["smiles"] if task == MOL2TEXT else r["description"] for r in rows[120:]]
    plain = database.search(queries, task, 6)
    ranked = ranked_db.search(queries, task, 3)
    changed = 0
    for p, r in zip(plain, ranked):
        assert len(r) == 3 and {n.row for n in r} <= {n.row for n in p}  # a choice among the 6 nearest
        changed += r[0].row != p[0].row
    assert ranker.scores(queries[0], plain[0]).shape == (6,)
    assert 0 < changed < len(queries)  # it does change some choices, not all
    # training searches (excluding the query's molecule) stay by similarity
    train = training_neighbours(ranked_db, rows[:20], task, 4)
    assert train == training_neighbours(database, rows[:20], task, 4)


@pytest.mark.parametrize("task", [MOL2TEXT, TEXT2MOL])
def test_an_input_that_is_in_the_database_stays_first(fitted, rows, task):
    database, rankers = fitted
    ranked_db = NeighbourDatabase.from_records(rows[:120]).use_rankers({task: rankers[task]})
    for i in (3, 40, 77):
        query = rows[i]["smiles"] if task == MOL2TEXT else rows[i]["description"]
        assert ranked_db.search([query], task, 2)[0][0].row == i


def test_rankers_round_trip_and_a_checkpoint_names_them(fitted, rows, tmp_path):
    database, rankers = fitted
    save_rankers(tmp_path / "ranker.json", rankers)
    loaded = load_rankers(tmp_path / "ranker.json")
    assert {t: r.to_dict() for t, r in loaded.items()} == {t: r.to_dict() for t, r in rankers.items()}
    # a checkpoint's t2m.json "neighbours" → "ranker": the database it reads ranks with it
    from t2m.data import write_records_tsv

    write_records_tsv(tmp_path / "memory.tsv", rows[:120])
    fmt = NeighbourFormat.from_meta({"neighbours": {"k": 1, "database": "memory.tsv", "ranker": "ranker.json"}})
    assert fmt.to_meta()["ranker"] == "ranker.json" and "ranker" not in NeighbourFormat().to_meta()
    db = load_checkpoint_database(tmp_path, fmt)
    assert set(db.rankers) == {MOL2TEXT, TEXT2MOL}
    query = rows[130]["smiles"]
    assert db.search([query], MOL2TEXT, 1) == NeighbourDatabase.from_records(rows[:120]).use_rankers(rankers).search([query], MOL2TEXT, 1)
    # a ranker for other features is refused with the fix
    raw = json.loads((tmp_path / "ranker.json").read_text())
    raw["rankers"][MOL2TEXT]["features"] = ["morgan"]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="t2m ranker"):
        load_rankers(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="t2m ranker"):
        load_rankers(tmp_path / "none.json")


def test_ranker_cli_fits_both_directions(rows, tmp_path):
    from t2m.data import write_records_tsv

    write_records_tsv(tmp_path / "pairs.tsv", rows[:60])
    done = subprocess.run([sys.executable, "-m", "t2m", "ranker", "--database", str(tmp_path / "pairs.tsv"),
                           "--out", str(tmp_path / "r.json"), "--pool", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(load_rankers(tmp_path / "r.json")) == {MOL2TEXT, TEXT2MOL}
    bad = subprocess.run([sys.executable, "-m", "t2m", "ranker", "--database", str(tmp_path / "pairs.tsv"),
                          "--out", str(tmp_path / "r.json"), "--pool", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--pool 2" in bad.stderr


def test_ranker_cli_fits_on_the_settings_train_split_without_a_database(tiny_chebi20, tmp_path):
    """Without --database: the ChEBI-20 train split of the setting (official where train.txt is present)."""
    done = subprocess.run([sys.executable, "-m", "t2m", "ranker", "--data", str(tiny_chebi20), "--setting", "benchmark",
                           "--dev-size", "20", "--out", str(tmp_path / "r.json"), "--pool", "4", "--task", "text2mol"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "database: the ChEBI-20 benchmark setting's train split, 3001 pairs" not in done.stdout  # tiny: 140
    assert "database: the ChEBI-20 benchmark setting's train split, 140 pairs" in done.stdout
    ranker = load_rankers(tmp_path / "r.json")[TEXT2MOL]
    assert ranker.fitted_on["pairs"] == 140 and ranker.fitted_on["database"].startswith("ChEBI-20 benchmark train")


def test_bench_runs_the_ranked_retrieval_beside_the_nearest_pair(fitted, rows):
    from t2m.bench.systems import ranked_retrieval_system, retrieval_system

    database, rankers = fitted
    queries = [r["description"] for r in rows[120:]]
    nearest = retrieval_system(TEXT2MOL, rows[:120], queries, progress=False)
    ranked = ranked_retrieval_system(TEXT2MOL, rows[:120], queries, rankers[TEXT2MOL])
    assert ranked.name == "retrieval+ranker" and ranked.settings["ranker"]["task"] == TEXT2MOL
    assert ranked.outputs == [n[0].target for n in
                              NeighbourDatabase.from_records(rows[:120]).use_rankers(rankers).search(queries, TEXT2MOL, 1)]
    assert ranked.outputs != nearest.outputs and len(ranked.neighbours) == len(queries)
