"""Retrieval baselines on a small slice of ChEBI-20."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2m import data

from t2m.neighbours import baselines, similarity
from t2m.chem import morgan_fingerprint


@pytest.fixture(scope="module")
def slices(shared_data: Path) -> tuple[list[dict], list[dict]]:
    """(database: first 300 validation rows, queries: first 40 test rows)."""
    chebi20 = shared_data / "chebi20"
    return data.read_tsv_records(chebi20 / "validation.txt")[:300], data.read_tsv_records(chebi20 / "test.txt")[:40]


def columns(records: list[dict], key: str) -> list[str]:
    return [r[key] for r in records]


def test_mol2text_finds_the_same_molecule_and_falls_back_on_invalid(slices):
    db, test = slices
    retriever = similarity.MoleculeSimilarity(columns(db, "smiles"), columns(db, "description"))
    queries = [db[7]["smiles"], db[123]["smiles"], "C1CC(", "", test[0]["smiles"]]
    result = retriever.most_similar(queries, progress=False)
    assert result.outputs[:2] == [db[7]["description"], db[123]["description"]]
    assert result.neighbours[:2] == [7, 123] and result.similarities[:2] == [1.0, 1.0]
    assert result.fallback == [False, False, True, True, False]
    assert result.n_fallback == 2
    # invalid input: still answered with a database caption, the one whose SMILES text is closest
    assert result.outputs[2] in columns(db, "description") and result.outputs[3] in columns(db, "description")
    # a real test molecule: the caption of its nearest neighbour, with Tanimoto in (0, 1)
    assert 0.0 < result.similarities[4] < 1.0
    assert result.outputs[4] == db[result.neighbours[4]]["description"]


def test_mol2text_neighbour_is_the_most_similar(slices):
    from rdkit import DataStructs

    db, test = slices
    result = similarity.MoleculeSimilarity(columns(db, "smiles"), columns(db, "description")).most_similar(
        columns(test[:5], "smiles"), progress=False
    )
    db_fps = [morgan_fingerprint(s) for s in columns(db, "smiles")]
    for query, row, tanimoto in zip(test[:5], result.neighbours, result.similarities):
        scores = DataStructs.BulkTanimotoSimilarity(morgan_fingerprint(query["smiles"]), db_fps)
        assert tanimoto == pytest.approx(max(scores)) and row == scores.index(max(scores))


def test_text2mol_finds_the_same_description(slices):
    db, test = slices
    retriever = similarity.TextSimilarity(columns(db, "description"), columns(db, "smiles"))
    result = retriever.most_similar([db[5]["description"], db[250]["description"].upper(), "", "zzzz qqqq"])
    assert result.outputs[:2] == [db[5]["smiles"], db[250]["smiles"]]
    assert result.similarities[0] == pytest.approx(1.0)
    # nothing in common with any description: first SMILES, flagged
    assert result.fallback == [False, False, True, True]
    assert result.outputs[2] == db[0]["smiles"]


def test_nearest_rows_rank_the_database_best_first_and_agree_with_retrieve(slices):
    from rdkit import DataStructs

    db, test = slices
    queries = columns(test[:6], "smiles") + ["C1CC("]
    molecules = similarity.MoleculeSimilarity(columns(db, "smiles"), columns(db, "description"))
    found = molecules.nearest_rows(queries, 5)
    assert [int(rows[0]) for rows in found] == molecules.most_similar(queries, progress=False).neighbours
    db_fps = [morgan_fingerprint(s) for s in columns(db, "smiles")]
    for query, rows in zip(test[:6], found):
        scores = DataStructs.BulkTanimotoSimilarity(morgan_fingerprint(query["smiles"]), db_fps)
        assert [scores[r] for r in rows] == sorted(scores, reverse=True)[:5]
    texts = similarity.TextSimilarity(columns(db, "description"), columns(db, "smiles"))
    descriptions = columns(test[:6], "description")
    found = texts.nearest_rows(descriptions, 3)
    assert [int(rows[0]) for rows in found] == texts.most_similar(descriptions, progress=False).neighbours
    assert all(len(rows) == 3 and len(set(rows.tolist())) == 3 for rows in found)
    assert len(texts.nearest_rows([db[0]["description"]], 1000)[0]) == len(db)  # n beyond the database: all


def test_baselines_beat_chance_and_write_molt5_files(slices, tmp_path: Path):
    from rdkit import DataStructs

    db, test = slices
    outputs = baselines.text2mol_baseline(columns(test, "description"), columns(db, "description"), columns(db, "smiles"))
    captions = baselines.mol2text_baseline(columns(test, "smiles"), columns(db, "smiles"), columns(db, "description"))
    assert len(outputs) == len(captions) == len(test)

    def mean_tanimoto(predicted: list[str]) -> float:
        return sum(
            DataStructs.TanimotoSimilarity(morgan_fingerprint(p), morgan_fingerprint(r["smiles"]))
            for p, r in zip(predicted, test)
        ) / len(test)

    # retrieval by description finds structurally closer molecules than a fixed guess does
    assert mean_tanimoto(outputs) > mean_tanimoto([db[0]["smiles"]] * len(test)) + 0.1

    path = tmp_path / "retrieval-text2mol.txt"
    data.write_predictions(path, "text2mol", columns(test, "description"), columns(test, "smiles"), outputs)
    lines = path.read_text().split("\n")
    assert lines[0] == "description\tground truth\toutput" and len(lines) == len(test) + 2
    assert lines[1].split("\t") == [test[0]["description"], test[0]["smiles"], outputs[0]]


def test_mismatched_database_is_an_error():
    with pytest.raises(ValueError, match="one caption per SMILES"):
        similarity.MoleculeSimilarity(["CC"], [])
    with pytest.raises(ValueError, match="one SMILES per description"):
        similarity.TextSimilarity(["a"], ["C", "CC"])


def test_top_rows_is_a_stable_sort_cut_short_and_blocks_stay_bounded(monkeypatch):
    """The linear-time top-n equals a full stable sort (ties to the earliest row) on scores full of ties;
    text queries against a large database are scored in smaller blocks with the same results."""
    import numpy as np

    from t2m.neighbours import similarity

    rng = np.random.default_rng(0)
    for _ in range(500):
        scores = rng.integers(0, 5, rng.integers(1, 60)) / 4.0
        n = int(rng.integers(0, len(scores) + 3))
        assert similarity.top_rows(scores, n).tolist() == np.argsort(-scores, kind="stable")[:n].tolist()
    assert similarity.block_rows(26_407) == 256 and similarity.block_rows(300_000) == 55
    descriptions = [f"The molecule is a {w} acid with {i} carbons." for i, w in enumerate(["fatty", "amino", "keto"] * 20)]
    retriever = similarity.TextSimilarity(descriptions, [f"C{i}" for i in range(len(descriptions))])
    queries = descriptions[::7] + ["an amino acid", "a keto acid with 5 carbons"]
    whole = retriever.search(queries, 4)
    monkeypatch.setattr(similarity, "BLOCK_VALUES", 3 * len(descriptions))  # blocks of 3 queries
    assert similarity.block_rows(len(descriptions)) == 3
    split = retriever.search(queries, 4)
    assert [r.tolist() for r, _ in split] == [r.tolist() for r, _ in whole]
    assert retriever.most_similar(queries).neighbours == [int(r[0]) for r, _ in whole]


def test_molecule_similarities_are_rdkits_bulk_tanimoto_exactly(slices):
    """The sparse-product Tanimoto equals RDKit's BulkTanimotoSimilarity to the last bit for every
    (query, database) pair, so the nearest rows and their order (ties: earliest row) are RDKit's."""
    import numpy as np
    from rdkit import DataStructs

    from t2m.chem import morgan_fingerprints

    db, test = slices
    molecules = similarity.MoleculeSimilarity(columns(db, "smiles"), columns(db, "description"))
    queries = columns(test, "smiles") + columns(db[:20], "smiles")
    db_fps = [fp for fp in morgan_fingerprints(columns(db, "smiles")) if fp is not None]
    query_fps = morgan_fingerprints(queries)
    ours = molecules._tanimoto(query_fps)
    rdkit = np.array([DataStructs.BulkTanimotoSimilarity(fp, db_fps) for fp in query_fps])
    assert ours.shape == rdkit.shape and np.array_equal(ours, rdkit)
    for (rows, scores), want in zip(molecules.search(queries, 8), rdkit):
        assert np.array_equal(rows, molecules._fp_rows[similarity.top_rows(want, 8)])
        assert np.array_equal(scores, want[similarity.top_rows(want, 8)])
