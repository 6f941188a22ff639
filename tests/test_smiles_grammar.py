"""SMILES syntax constraint: every ChEBI-20 SMILES is allowed, broken syntax never is, decoding obeys it."""

from __future__ import annotations

import pytest
import torch

from t2m.decoding.smiles_grammar import SmilesState, SmilesSyntaxProcessor, advance, owed_tokens
from t2m.decoding.smiles_valence import ValenceState, advance_valence, max_valence


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


@pytest.mark.parametrize("broken", ["C)", "CC(C))", "[C[", "C]", "[C(]", "C C", "C%A", "CCé", "[N%]", "C%0", "C%00"])
def test_broken_syntax_is_recognised(broken):
    assert _state(broken).broken, broken


def test_ring_digits_inside_brackets_are_not_ring_bonds():
    assert _state("[NH3+]").rings == 0 and _state("[13C]").rings == 0
    assert _state("C1").rings == 1 << 1 and _state("C1CC1").rings == 0
    assert _state("C%15CC%15").rings == 0 and _state("C%05").broken  # RDKit refuses %nn under 10


def test_every_shared_chebi20_smiles_is_allowed_token_by_token(shared_data):
    """Teacher-forced through the shipped tokenizer, each of the 33,010 ChEBI-20 SMILES (validation, test,
    unlabeled) has every token allowed, by syntax and by valence, and may end: the constraint never removes a
    real molecule."""
    from t2m.data import load_chebi20_records, load_chebi20_unlabeled_records
    from t2m.model.checkpoint import default_model_dir
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
        state, chemistry = SmilesState(), ValenceState()
        for position, token in enumerate(ids):
            variant = state.variant()
            allowed = allowed_table[variant][token] and depth_table[variant][token] + state.depth >= 0
            state = advance(state, processor.surfaces[token])
            chemistry = advance_valence(chemistry, processor.surfaces[token])
            if not allowed or state.broken or chemistry is None:
                rejected.append((text, position))
                break
        else:
            if not state.can_end():
                rejected.append((text, len(ids)))
    assert rejected == []


def test_processor_masks_what_would_break_syntax(tiny_tokenizer_dir):
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    processor = SmilesSyntaxProcessor(tokenizer, valence=False)  # the syntax mask alone, on every token
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
    """A randomly initialised model writes anything; constrained, every output is a complete SMILES syntax,
    ended by max_new_tokens at the latest."""
    from t2m.decoding.translator import Translator
    from t2m.options import DecodingOptions, SmilesConstraints

    torch.manual_seed(0)
    translator = Translator.from_pretrained(tiny_model_dir)
    texts = [f"The molecule is compound number {i}." for i in range(6)]
    free = translator.translate(texts, "text2mol", DecodingOptions(max_new_tokens=40, do_sample=True),
                                SmilesConstraints(syntax=False, valid_smiles=False))
    torch.manual_seed(0)
    kept = translator.translate(texts, "text2mol", DecodingOptions(num_beams=3, max_new_tokens=40, num_return_sequences=3),
                                SmilesConstraints(valid_smiles=False))
    assert any(_state(t.output).broken for t in free)
    for translation in kept:
        for candidate in translation.candidates:
            state = _state(candidate)
            assert not state.broken, candidate
            assert state.can_end(), candidate  # complete by max_new_tokens: every branch and ring closed


def test_owed_tokens_count_what_completes_a_prefix():
    assert owed_tokens(_state("")) == 2  # an atom, then the end
    assert owed_tokens(_state("CCO")) == 1
    # two branches, one ring bond (an atom and a digit), the atom '(' asks for, the end: an upper bound (5 would do,
    # with the branch's atom closing the ring), but one that every next atom lowers -- counted as one of the ring
    # bond's, writing it left the count at 5 and a budget could be overrun (seed 11275199 of the property test)
    assert owed_tokens(_state("C(C1CC(")) == 6 and owed_tokens(_state("C(C1CC(C")) == 5
    assert owed_tokens(_state("C1")) == 5 and owed_tokens(_state("C1C")) == 4  # atoms before the ring may close
    assert owed_tokens(_state("CC=")) == 2 and owed_tokens(_state("C%12CC")) == 5 and owed_tokens(_state("[NH")) == 2
    # a '%' label with no ring bond open to close opens one: its digits, then what ring bond %10 owes (its label
    # and an atom, two atoms before it may close, the end)
    assert owed_tokens(_state("C%")) == 2 + 4 + 2 + 1 and owed_tokens(_state("C%1")) == 1 + 4 + 2 + 1
    # ... and with one open, closes it: C%12CC%12 owes its two digits and the end
    assert owed_tokens(_state("C%12CC%")) == 3 and owed_tokens(_state("C%12CC%1")) == 2
    assert owed_tokens(_state("C%12CC%2")) == 1 + 4 + 4 + 2 + 1  # %2x cannot close %12: another ring bond


def test_length_budget_forces_a_runaway_to_close_in_time(tiny_tokenizer_dir):
    """With as many tokens left as the prefix owes, only tokens that pay one off remain allowed."""
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    prefix = tokenizer("C(C1CC", add_special_tokens=False).input_ids
    owed = owed_tokens(_state("C(C1CC"))
    assert owed == 4
    free = SmilesSyntaxProcessor(tokenizer, valence=False)
    tight = free.limited(len(prefix) + owed)
    rows = torch.tensor([[0] + prefix])
    scores = torch.zeros(1, len(tokenizer))
    allowed_free = torch.isfinite(free(rows, scores)[0]).nonzero().flatten().tolist()
    allowed = torch.isfinite(tight(rows, scores)[0]).nonzero().flatten().tolist()
    assert len(allowed_free) > 10 and set(allowed) < set(allowed_free)
    texts = {tokenizer.convert_ids_to_tokens(i) for i in allowed}
    # the ring closes first: after ")" it might be back on the atom that opened it
    assert "1" in texts and ")" not in texts and "C" not in texts and tokenizer.eos_token not in texts
    # one token more and an atom fits again
    assert "C" in {tokenizer.convert_ids_to_tokens(i) for i in
                   torch.isfinite(free.limited(len(prefix) + owed + 1)(rows, scores)[0]).nonzero().flatten().tolist()}



def _chemistry(text: str):
    return advance_valence(ValenceState(), text)


@pytest.mark.parametrize("smiles", [
    "C[N+](C)(C)C", "[O-]Cl(=O)(=O)=O", "C=1CC1", "C1CC=1", "C(C)1CC1", "[C@@H](C)(C)C", "CN(=O)=O",
    "C%12CC%12", "C/C=C\\C", "[NH4+].[Cl-]", "[13CH3:2]C", "[Fe+2]", "C[C@TH1H](N)O", 
    "c1ccccc1", "BrCCl", "OP(=O)(O)O", "CS(=O)(=O)C",
])
def test_valence_check_passes_what_rdkit_parses(smiles):
    from rdkit import Chem

    assert Chem.MolFromSmiles(smiles) is not None and _chemistry(smiles) is not None, smiles


@pytest.mark.parametrize("prefix", [
    "CC(=O)(C)C", "CO(C)C", "C(=OC)", "[C@@H](C)(C)(C)C", "C11", "C1C1", "C=C1=CC", "C[O-]C", "ClC(C)(C)(C)Cl",
    "C=(", "=C", "C.=C", "CH", "C[C@HeC", "C[NH3+C",
])
def test_valence_check_refuses_what_rdkit_refuses(prefix):
    """Each prefix already has an atom with too many bonds, a ring bond to itself or to a neighbour, or a
    misplaced bond or atom: RDKit parses no SMILES that starts with it."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        assert Chem.MolFromSmiles(prefix) is None, prefix
    assert _chemistry(prefix) is None, prefix


def test_valence_limits_are_rdkits():
    assert (max_valence("C"), max_valence("O"), max_valence("N", 1, 0), max_valence("O", -1, 0)) == (4, 2, 4, 1)
    assert max_valence("C", 0, 1) == 3  # [C@@H]: one bond goes to the hydrogen
    assert max_valence("Cl") == 7  # perchlorate, as RDKit's clean-up reads it


def test_processor_masks_what_would_break_valence(tiny_tokenizer_dir):
    """After "CC(=O)(C)" the second carbon has four bonds: no atom, branch or ring bond may go on it."""
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    processor = SmilesSyntaxProcessor(tokenizer, candidates=len(tokenizer))  # check every token
    prefix = tokenizer("CC(=O)(C)", add_special_tokens=False).input_ids
    scores = processor(torch.tensor([[0] + prefix]), torch.zeros(1, len(tokenizer)))[0]
    allowed = {tokenizer.convert_ids_to_tokens(i) for i in torch.isfinite(scores).nonzero().flatten().tolist()}
    syntax_only = SmilesSyntaxProcessor(tokenizer, valence=False)
    free = syntax_only(torch.tensor([[0] + prefix]), torch.zeros(1, len(tokenizer)))[0]
    assert "C" in {tokenizer.convert_ids_to_tokens(i) for i in torch.isfinite(free).nonzero().flatten().tolist()}
    assert "C" not in allowed and "(" not in allowed and "1" not in allowed
    assert tokenizer.eos_token in allowed and "." in allowed  # the molecule may end, or a new one start


def test_constrained_decoding_keeps_valences(tiny_model_dir, one_torch_thread):
    """A random model decoded under the constraint writes SMILES that pass the valence check whole."""
    from t2m.decoding.translator import Translator
    from t2m.options import DecodingOptions, SmilesConstraints

    torch.manual_seed(0)
    translator = Translator.from_pretrained(tiny_model_dir)
    texts = [f"The molecule is compound number {i}." for i in range(6)]
    three = DecodingOptions(num_beams=3, max_new_tokens=40, num_return_sequences=3)
    free = translator.translate(texts, "text2mol", three, SmilesConstraints(syntax=False, valid_smiles=False))
    syntax_only = translator.translate(texts, "text2mol", three, SmilesConstraints(valid_smiles=False, valence=False))
    kept = translator.translate(texts, "text2mol", three, SmilesConstraints(valid_smiles=False))
    assert any(_chemistry(c) is None for t in free for c in t.candidates)
    assert all(_state(c).can_end() for t in syntax_only for c in t.candidates)
    assert any(_chemistry(c) is None for t in syntax_only for c in t.candidates)  # --no-smiles-valence
    assert all(_chemistry(c) is not None for t in kept for c in t.candidates)
