"""SMILES syntax constraint: every ChEBI-20 SMILES is allowed, broken syntax never is, decoding obeys it."""

from __future__ import annotations

import pytest
import torch

from t2m.smiles_grammar import SmilesState, SmilesSyntaxProcessor, advance


def _state(text: str) -> SmilesState:
    return advance(SmilesState(), text)


@pytest.mark.parametrize("smiles", [
    "CCO", "C1CCCCC1", "C%12CC%12", "C%10CC%10C1CC1", "[NH3+]CC([O-])=O", "[13CH3][C@@H](N)C(=O)O",
    "C/C=C\\C", "c1ccccc1.[Na+].[Cl-]", "C(C(C)C)C", "OC1=CC=C2C=CC=CC2=C1", " CC",
])
def test_complete_smiles_may_end(smiles):
    assert _state(smiles).can_end(), smiles


@pytest.mark.parametrize("prefix", ["C1CC", "C(C", "C%1", "C%12CC", "[NH3", "CC=", "CC#", "", " "])
def test_unfinished_smiles_may_not_end(prefix):
    state = _state(prefix)
    assert not state.broken and not state.can_end(), prefix


@pytest.mark.parametrize("broken", ["C)", "CC(C))", "[C[", "C]", "[C(]", "C C", "C%A", "CCé", "[N%]"])
def test_broken_syntax_is_recognised(broken):
    assert _state(broken).broken, broken


def test_ring_digits_inside_brackets_are_not_ring_bonds():
    assert _state("[NH3+]").rings == 0 and _state("[13C]").rings == 0
    assert _state("C1").rings == 1 << 1 and _state("C1CC1").rings == 0
    assert _state("C%05CC5").rings == 0  # %05 is ring bond 5


def test_every_shared_chebi20_smiles_is_allowed_token_by_token(shared_data):
    """Teacher-forced through the shipped tokenizer, each of the 33,010 ChEBI-20 SMILES (validation, test,
    unlabeled) has every token allowed and may end: the constraint never removes a real molecule."""
    from t2m.data import load_chebi20_records, load_chebi20_unlabeled_records
    from t2m.modeling import default_model_dir
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(default_model_dir())
    processor = SmilesSyntaxProcessor(tokenizer)
    splits = load_chebi20_records(shared_data / "chebi20", "benchmark")
    smiles = [r["smiles"] for r in splits.train + splits.dev + splits.test]
    smiles += [r["smiles"] for r in load_chebi20_unlabeled_records(shared_data / "chebi20")]
    assert len(smiles) > 33_000
    allowed_table, depth_table = processor.allowed.tolist(), processor.min_depth.tolist()
    rejected = []
    for text in smiles:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        state = SmilesState()
        for position, token in enumerate(ids):
            variant = state.variant()
            allowed = allowed_table[variant][token] and depth_table[variant][token] + state.depth >= 0
            state = advance(state, processor.surfaces[token])
            if not allowed or state.broken:
                rejected.append((text, position))
                break
        else:
            if not state.can_end():
                rejected.append((text, len(ids)))
    assert rejected == []


def test_processor_masks_what_would_break_syntax(tiny_tokenizer_dir):
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    processor = SmilesSyntaxProcessor(tokenizer)
    vocab = len(tokenizer)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    prefixes = [ids("CC(C"), ids("C1CC"), ids("CCO")]
    width = max(len(p) for p in prefixes)
    # equal lengths as in decoding: the shorter prefixes go on with atoms, which change no state
    carbon = tokenizer.convert_tokens_to_ids("C")
    rows = [[0] + p + [carbon] * (width - len(p)) for p in prefixes]
    scores = processor(torch.tensor(rows), torch.zeros(3, vocab))
    eos = tokenizer.eos_token_id
    assert scores[0, eos] == float("-inf") and scores[1, eos] == float("-inf") and scores[2, eos] == 0
    close = tokenizer.convert_tokens_to_ids(")")
    assert scores[0, close] == 0 and scores[2, close] == float("-inf")  # no branch open in "CCO"
    assert torch.isfinite(scores).sum(dim=1).min() > 10  # plenty left to choose from


def test_constrained_decoding_of_a_random_model_is_always_syntactic(tiny_model_dir, one_torch_thread):
    """A randomly initialised model writes anything; constrained, every finished output is syntactic."""
    from t2m.generate import Translator

    torch.manual_seed(0)
    translator = Translator.from_pretrained(tiny_model_dir)
    texts = [f"The molecule is compound number {i}." for i in range(6)]
    free = translator.translate(texts, task="text2mol", max_new_tokens=40, smiles_syntax=False, valid_smiles=False,
                                do_sample=True)
    torch.manual_seed(0)
    kept = translator.translate(texts, task="text2mol", num_beams=3, max_new_tokens=40, valid_smiles=False,
                                num_return_sequences=3)
    assert any(_state(t.output).broken for t in free)
    for translation in kept:
        for candidate in translation.candidates:
            state = _state(candidate)
            assert not state.broken, candidate
            # a candidate either ended legally or ran into max_new_tokens unfinished
            assert state.can_end() or len(candidate) >= 39, candidate  # 40 tokens are at least 39 characters
