"""Minimum Bayes risk selection of captions (t2m.decoding.mbr) and its use in Translator / t2m translate."""

from __future__ import annotations

import json

import pytest
import torch

from t2m.decoding.translator import Translator
from t2m.decoding.mbr import mbr_index

CONSENSUS = [
    "The molecule is a monocarboxylic acid.",  # most probable, short
    "The molecule is a long-chain fatty acid that is octadecanoic acid substituted by a hydroxy group at position 12.",
    "The molecule is a long-chain fatty acid that is octadecanoic acid substituted by a hydroxy group.",
    "The molecule is a hydroxy fatty acid that is octadecanoic acid substituted by a hydroxy group at position 12.",
    "The molecule is an indole alkaloid isolated from Rauvolfia serpentina.",
]


@pytest.mark.parametrize("utility", ["chrf", "bleu"])
def test_mbr_picks_the_candidate_closest_to_the_others(utility):
    assert mbr_index(CONSENSUS, utility) == 1


def test_mbr_keeps_the_first_when_nothing_to_compare_or_off():
    assert mbr_index(["a b c", "a b c d e f g"], "chrf") == 0
    assert mbr_index(["only"], "chrf") == 0
    assert mbr_index(CONSENSUS, "none") == 0
    # identical candidates tie: the earlier (more probable) one is kept
    assert mbr_index(["x y z", "a b c", "a b c", "x y z"], "chrf") == 0


def test_unknown_utility_is_refused():
    with pytest.raises(ValueError, match="chrf, bleu"):
        mbr_index(CONSENSUS, "meteor")


@pytest.fixture(scope="module")
def translator(tiny_model_dir):
    torch.manual_seed(0)
    return Translator.from_pretrained(tiny_model_dir)


def test_translator_returns_the_mbr_choice_among_all_beams(translator, tiny_chebi20):
    from t2m.data import read_tsv_records

    smiles = [r["smiles"] for r in read_tsv_records(tiny_chebi20 / "test.txt")[:4]]
    from t2m.options import DecodingOptions

    plain = translator.translate(smiles, "mol2text", DecodingOptions(num_beams=4, max_new_tokens=12))
    chosen = translator.translate(smiles, "mol2text", DecodingOptions(num_beams=4, max_new_tokens=12, mbr="chrf"))
    for p, c in zip(plain, chosen):
        assert len(c.candidates) == 4 and c.candidates[0] == p.output  # the same beams, all returned
        assert c.output == c.candidates[mbr_index(c.candidates, "chrf")]
    # greedy has one candidate: MBR changes nothing
    greedy = translator.translate(smiles, "mol2text", DecodingOptions(max_new_tokens=12, mbr="chrf"))
    assert [g.output for g in greedy] == [g.output for g in translator.translate(smiles, "mol2text",
                                                                                    DecodingOptions(max_new_tokens=12))]
    with pytest.raises(ValueError, match="mol2text"):
        translator.translate(["The molecule is an alcohol."], "text2mol", DecodingOptions(num_beams=2, mbr="chrf"))


def test_cli_mbr_option(tiny_model_dir, tmp_path):
    from t2m.cli import main

    out = tmp_path / "out.jsonl"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"input": s}) + "\n" for s in ["CCO", "c1ccccc1O", "CC(=O)O"]))
    assert main(["translate", "--task", "mol2text", "--model", str(tiny_model_dir), "--input", str(src),
                 "--output", str(out), "--num-beams", "3", "--max-new-tokens", "8", "--mbr", "bleu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    assert all(r["output"] == r["candidates"][mbr_index(r["candidates"], "bleu")] for r in rows)
