"""Editing measures: what an output keeps and changes of the neighbour it was shown, against the truth."""

from __future__ import annotations

import math

import numpy as np

from t2m.editing import changed_positions, edit_agreement, molecule_similarities, similarity_bands, tokens

NEIGHBOUR = "The molecule is a monocarboxylic acid anion that is the conjugate base of lactic acid."
GOLD = "The molecule is a monocarboxylic acid that is the conjugate acid of lactate."


def test_smiles_and_caption_tokens():
    assert tokens("C[C@H](N)C(=O)[O-]", "text2mol") == ["C", "[C@H]", "(", "N", ")", "C", "(", "=", "O", ")", "[O-]"]
    assert tokens("ClC1=CC=CC=C1Br", "text2mol")[:2] == ["Cl", "C"] and tokens("a b  c", "mol2text") == ["a", "b", "c"]
    assert changed_positions(["a", "b", "c"], ["a", "x", "c"]) == {1}
    assert changed_positions(["a", "b"], ["a", "b"]) == set()


def test_a_copy_an_exact_edit_and_a_partial_one():
    copy = edit_agreement([NEIGHBOUR], [GOLD], [NEIGHBOUR], "mol2text")
    assert copy["rows"] == 1 and copy["identical_to_neighbour"] == 1.0
    assert copy["changed_where_gold_changed"] == 0.0 and copy["kept_where_gold_kept"] == 1.0
    exact = edit_agreement([GOLD], [GOLD], [NEIGHBOUR], "mol2text")
    assert exact["changed_where_gold_changed"] == 1.0 and exact["kept_where_gold_kept"] == 1.0
    assert exact["identical_to_neighbour"] == 0.0
    wrong = edit_agreement(["A steroid."], [GOLD], [NEIGHBOUR], "mol2text")  # changes everything
    assert wrong["changed_where_gold_changed"] == 1.0 and wrong["kept_where_gold_kept"] == 0.0
    # rows whose truth is the neighbour's target are not counted
    none = edit_agreement([GOLD], [NEIGHBOUR], [NEIGHBOUR], "mol2text")
    assert none["rows"] == 0 and math.isnan(none["changed_where_gold_changed"])
    # SMILES: the anion's charge is the edit; keeping the skeleton and changing [O-] is right
    smiles = edit_agreement(["CC(O)C(=O)O"], ["CC(O)C(=O)O"], ["CC(O)C(=O)[O-]"], "text2mol")
    assert smiles["changed_where_gold_changed"] == 1.0 and smiles["kept_where_gold_kept"] == 1.0


def test_similarity_bands_of_real_neighbours():
    sims = molecule_similarities(["CC(O)C(=O)O", "CC(O)C(=O)O", "c1ccccc1", "not a smiles"],
                                 ["CC(O)C(=O)O", "CC(O)C(=O)[O-]", "CCO", "CCO"])
    assert sims[0] == 1.0 and sims[3] == 0.0 and sims[2] < 0.9
    bands = similarity_bands(sims)
    assert bands["≥0.999"].tolist() == [True, sims[1] >= 0.999, False, False]
    assert sum(mask.astype(int) for mask in bands.values()).tolist() == [1, 1, 1, 1]
    assert np.all(bands["<0.9"][2:])
