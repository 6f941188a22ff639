"""Issue 18: whatever a model's scores are, a SMILES decoded under the constraints parses in RDKit, or it is
flagged with its reason.

Random scores (biased, per example, towards the characters that opened holes before: ``[``, digits, ``.``,
``(``, ``%``, charges) are decoded greedily through :class:`t2m.decoding.smiles_grammar.SmilesSyntaxProcessor` with the
shipped tokenizer and a short length budget, as ``Translator.translate`` does.

- the output is complete syntax (every branch, ring bond and bracket closed, nothing after a bond);
- RDKit's grammar (``sanitize=False``) parses it, or the reason is one the syntax constraint leaves to the
  valence check (an atom outside the organic subset, a bracket symbol that is no element: a greedy
  hypothesis with no valence-legal token keeps its scores);
- whatever RDKit refuses (those, and aromaticity or kekulization left to the model), the translator flags
  ``no valid SMILES among the beams``;
- a budget too small to close what the first token opened (1 token: ``[``) leaves the output unfinished, and
  the translator flags it so (:data:`t2m.decoding.smiles_grammar.FLAG_UNFINISHED`).
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from t2m.decoding.smiles_grammar import SmilesState, SmilesSyntaxProcessor, advance

BIASED = "[]()%.0123456789+-:@=#/\\HCcNnOo"
_ORGANIC = re.compile(r"Cl|Br|[BCNOSPFI]|[bcnops]|\*")


@pytest.fixture(scope="module")
def processor():
    from t2m.model.checkpoint import default_model_dir
    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(default_model_dir())
    return tokenizer, SmilesSyntaxProcessor(tokenizer)


def decode(tokenizer, processor: SmilesSyntaxProcessor, seed: int, favoured: str, bonus: float, budget: int) -> str:
    generator = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    boost = torch.zeros(vocab)
    for token, surface in enumerate(processor.surfaces):
        if surface and surface.strip() and set(surface.strip()) <= set(favoured):
            boost[token] = bonus
    generated: list[int] = []
    for _ in range(budget):
        scores = torch.randn(1, vocab, generator=generator) + boost
        scores = processor(torch.tensor([[0] + generated]), scores)
        token = int(scores.argmax())
        if token == processor.eos:
            break
        generated.append(token)
    return tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()


def rdkit_error(smiles: str) -> str:
    """RDKit's parse error for ``smiles`` ("" when it parses)."""
    import io
    import logging

    from rdkit import Chem, rdBase

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("rdkit")
    logger.addHandler(handler)
    rdBase.LogToPythonLogger()
    try:
        parsed = Chem.MolFromSmiles(smiles, sanitize=False)
    finally:
        logger.removeHandler(handler)
        rdBase.LogToCppStreams()
    return "" if parsed is not None else stream.getvalue() or "no message"


def unparsed_reason(smiles: str) -> str | None:
    """Why RDKit's grammar refuses ``smiles`` when the constraint may let it through -- what is left to
    the valence check and to valid-SMILES reranking, which flags the row: a ring bond closed on the atom that
    opened it or the next (the valence walk's ring-bond rule), an atom outside the organic subset, a bracket
    atom whose symbol is no element. None when there is no such reason (a syntax hole)."""
    from rdkit import Chem, rdBase

    error = rdkit_error(smiles)
    if "duplicated ring closure" in error or "duplicates bond" in error:
        return "a ring bond closed on the atom that opened it or the next"

    for inside in re.findall(r"\[([^\]]*)\]", smiles):
        symbol = re.match(r"\d*([A-Z][a-z]?|[a-z][a-z]?|\*)", inside)
        with rdBase.BlockLogs():
            if symbol and Chem.MolFromSmiles(f"[{symbol.group(1)}]", sanitize=False) is None:
                return f"no element {symbol.group(1)!r}"
    outside = re.sub(r"\[[^\]]*\]", "", smiles)
    for run in re.findall(r"[A-Za-z*]+", outside):
        if _ORGANIC.sub("", run):
            return f"{run!r} is not an organic-subset atom"
    return None


examples = dict(seed=st.integers(0, 2**31 - 1), favoured=st.text(alphabet=BIASED, min_size=1, max_size=8),
                bonus=st.sampled_from([0.0, 2.0, 4.0, 8.0]), budget=st.integers(4, 24))


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**examples)
@example(seed=11275199, favoured="0(#", bonus=2.0, budget=14)  # once ended with a branch and a ring bond open
def test_constrained_outputs_parse_or_are_flagged(processor, seed, favoured, bonus, budget):
    from rdkit import Chem, rdBase

    from t2m.chem import is_valid_smiles
    from t2m.decoding.translator import FLAG_NO_VALID, Translator

    tokenizer, base = processor
    smiles = decode(tokenizer, base.limited(budget, num_beams=1), seed, favoured, bonus, budget)
    assert advance(SmilesState(), smiles).can_end(), smiles
    with rdBase.BlockLogs():
        parsed = Chem.MolFromSmiles(smiles, sanitize=False)
    assert parsed is not None or unparsed_reason(smiles), f"RDKit cannot parse {smiles!r}"
    if not is_valid_smiles(smiles):
        flagged = Translator._finish(None, [smiles], None, "text2mol", True, False)
        assert flagged.flags == [FLAG_NO_VALID]


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**examples)
def test_syntax_alone_gives_complete_smiles(processor, seed, favoured, bonus, budget):
    from rdkit import Chem, rdBase

    tokenizer, base = processor
    smiles = decode(tokenizer, base.limited(budget, num_beams=1, valence=False), seed, favoured, bonus, budget)
    state = advance(SmilesState(), smiles)
    assert not state.broken and state.can_end(), smiles
    with rdBase.BlockLogs():
        parsed = Chem.MolFromSmiles(smiles, sanitize=False)
    assert parsed is not None or unparsed_reason(smiles), f"RDKit cannot parse {smiles!r}"


@pytest.mark.parametrize("prefix", ["[H2+2:111CCC", "[CH2+2:111", "[13", "C.", "C.1", "C(1", "C(=1", "C=(", "C()",
                                    "C=#", "C..", "(", "1", ".", "[Fe+-", "[C+++", "+00++", "[00C]", "[H@]"])
def test_the_holes_issue_18_found_are_closed(prefix):
    """A bracket atom running on over the molecule, a ring bond after '.', and their kin: broken, or never
    allowed to end."""
    state = advance(SmilesState(), prefix)
    assert state.broken or not state.can_end(), prefix
    if prefix in ("[H2+2:111CCC", "C.1", "C(1", "C(=1", "C=(", "C()", "C=#", "C..", "(", "1", "[Fe+-", "[C+++",
                  "+00++", "[00C]", "[H@]"):
        assert state.broken, prefix


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**{**examples, "budget": st.integers(1, 3)})
def test_a_budget_too_small_to_finish_is_flagged(processor, seed, favoured, bonus, budget):
    from t2m.decoding.translator import Translator
    from t2m.decoding.smiles_grammar import FLAG_UNFINISHED

    tokenizer, base = processor
    smiles = decode(tokenizer, base.limited(budget, num_beams=1), seed, favoured, bonus, budget)
    flags = Translator._finish(None, [smiles], None, "text2mol", True, False).flags
    assert advance(SmilesState(), smiles).can_end() or FLAG_UNFINISHED in flags, (smiles, flags)


def test_unfinished_and_broken_outputs_are_flagged_with_their_reason():
    from t2m.decoding.translator import FLAG_NO_VALID, Translator
    from t2m.decoding.smiles_grammar import FLAG_BROKEN_SYNTAX, FLAG_UNFINISHED

    def flags(smiles: str, rerank: bool = True) -> list[str]:
        return Translator._finish(None, [smiles], None, "text2mol", rerank, False).flags

    assert flags("C1CC") == [FLAG_NO_VALID, FLAG_UNFINISHED] and flags("[") == [FLAG_NO_VALID, FLAG_UNFINISHED]
    assert flags("C1CC", rerank=False) == [FLAG_UNFINISHED]  # flagged without valid-SMILES reranking too
    assert flags("CC)C") == [FLAG_NO_VALID, FLAG_BROKEN_SYNTAX]
    assert flags("CCO") == [] and flags("") == [FLAG_NO_VALID, FLAG_UNFINISHED]  # nothing written by the limit
    assert flags("c1cccc1") == [FLAG_NO_VALID]  # complete syntax, refused by RDKit's kekulization: no syntax flag
