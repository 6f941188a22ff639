"""SMILES syntax constraint for text2mol decoding.

A small model's SMILES are mostly invalid for syntax, not chemistry: on 150 dev rows the shipped model's
top beam closed a branch that was never opened in 69 outputs, left one open in 14 and a ring bond open in
4, against 1 valence error. :class:`SmilesSyntaxProcessor` is a ``transformers`` logits processor that
forbids, at every step and for every hypothesis, the tokens that would break SMILES syntax:

- a ``)`` with no open branch, a ``[`` inside a bracket atom, a ``]`` outside one, ``(``/``)``/``%`` inside one;
- a space after the first token (SMILES have none) and characters outside printable ASCII;
- the end-of-sequence token while a branch, a ring bond (``1``-``9``, ``%nn``) or a bracket atom is open,
  after a bond symbol, or before any atom.

Valence, aromaticity and stereo are left to the model (and to valid-SMILES reranking): the constraint is
exact for the syntax it covers and cheap (per step, one dictionary lookup and one token transition per
hypothesis, one vectorised mask). Tokens are read through the tokenizer's own pieces (SentencePiece ``▁``
as a space, byte-fallback ``<0xNN>`` as that byte), so any T5 tokenizer works, MolT5's included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_BONDS = set("-=#$:/\\~")
# variants of the state a token's validity depends on: inside a bracket atom (2) x digits still owed to a
# '%nn' ring label (3) x whether nothing has been generated yet (2)
_VARIANTS = 12


@dataclass(frozen=True)
class SmilesState:
    """Syntax state after a prefix: open branches, open ring labels (bit set), inside ``[...]``, digits
    owed to a ``%`` label (and the label so far), whether any character was written, whether the last
    character was a bond symbol, and whether the prefix is already broken."""

    depth: int = 0
    rings: int = 0
    bracket: bool = False
    percent: int = 0
    label: int = 0
    started: bool = False
    after_bond: bool = False
    broken: bool = False

    def variant(self) -> int:
        return (int(self.bracket) * 3 + self.percent) * 2 + int(not self.started)

    def can_end(self) -> bool:
        return (not self.broken and self.started and self.depth == 0 and self.rings == 0 and not self.bracket
                and self.percent == 0 and not self.after_bond)


def advance(state: SmilesState, text: str) -> SmilesState:
    """The state after writing ``text`` (a token's surface string) in ``state``."""
    if state.broken:
        return state
    depth, rings, bracket, percent, label = state.depth, state.rings, state.bracket, state.percent, state.label
    started, after_bond = state.started, state.after_bond
    for ch in text:
        if ch == " ":
            if started:
                return _BROKEN
            continue
        if not (" " < ch < "\x7f"):
            return _BROKEN
        if percent:
            if not ch.isdigit():
                return _BROKEN
            label = label * 10 + int(ch)
            percent -= 1
            if percent == 0:
                rings ^= 1 << label  # %05 is ring bond 5, as 5 is
            started, after_bond = True, False
            continue
        if bracket:
            if ch in "[()%":
                return _BROKEN
            if ch == "]":
                bracket = False
            started, after_bond = True, False
            continue
        if ch == "]":
            return _BROKEN
        if ch == "[":
            bracket = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return _BROKEN
        elif ch == "%":
            percent, label = 2, 0
        elif ch.isdigit():
            rings ^= 1 << int(ch)
        started = True
        after_bond = ch in _BONDS
    return SmilesState(depth, rings, bracket, percent, label, started, after_bond)


_BROKEN = SmilesState(broken=True)


def token_surfaces(tokenizer: Any) -> list[str | None]:
    """Each token id's text as it appears in decoded output (None: a special token, never SMILES)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(getattr(tokenizer, "all_special_ids", []))
    surfaces: list[str | None] = []
    for index, piece in enumerate(pieces):
        if index in special or piece is None:
            surfaces.append(None)
            continue
        byte = _BYTE.match(piece)
        if byte:
            value = int(byte.group(1), 16)
            surfaces.append(chr(value) if value < 0x80 else "\x00")  # a lone non-ASCII byte: never SMILES
        else:
            surfaces.append(piece.replace("\u2581", " "))
    return surfaces


class SmilesSyntaxProcessor:
    """A ``transformers`` logits processor keeping every hypothesis a syntactically possible SMILES.

    Works for greedy, beam and sampled decoding, with or without a kNN-MT processor before it: it only
    sets forbidden tokens to ``-inf``. A hypothesis that has ended (end-of-sequence or padding written) is
    left alone. The per-token tables are built once, at construction; reuse the processor for one tokenizer
    (a decoding's first step forgets the hypotheses of the one before).
    """

    def __init__(self, tokenizer: Any, eos_token_id: int | None = None, pad_token_id: int | None = None):
        import torch

        self.surfaces = token_surfaces(tokenizer)
        self.eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        self.pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        allowed, min_depth = [], []
        for variant in range(_VARIANTS):
            start = _variant_start(variant)
            effects = [_token_effect(start, text) if text else (False, 0) for text in self.surfaces]
            allowed.append([ok for ok, _ in effects])
            min_depth.append([lowest for _, lowest in effects])
        self.allowed = torch.tensor(allowed, dtype=torch.bool)  # (variant, token)
        self.min_depth = torch.tensor(min_depth, dtype=torch.int32)  # lowest relative branch depth
        self._states: dict[tuple[int, ...], SmilesState] = {}

    def state_of(self, tokens: list[int]) -> SmilesState | None:
        """The state after ``tokens`` (generated ids, decoder start excluded); None once it has ended."""
        key = tuple(tokens)
        state = self._states.get(key)
        if state is not None:
            return state
        if tokens and tokens[-1] in (self.eos, self.pad):
            return None
        parent = self.state_of(tokens[:-1]) if tokens else SmilesState()
        if parent is None:
            return None
        state = parent if not tokens else advance(parent, self.surfaces[tokens[-1]] or "\x00")
        self._states[key] = state
        return state

    def __call__(self, input_ids, scores):
        import torch

        rows = input_ids[:, 1:].tolist()  # drop the decoder start token
        length = len(rows[0]) if rows else 0
        # keep only the states of this step's prefixes' parents: memory stays O(hypotheses x length)
        self._states = {k: v for k, v in self._states.items() if len(k) == length - 1} if length else {}
        states = [self.state_of(tokens) for tokens in rows]
        live = [i for i, s in enumerate(states) if s is not None]
        if not live:
            return scores
        index = torch.tensor(live, device=scores.device)
        variants = torch.tensor([states[i].variant() for i in live])
        depths = torch.tensor([states[i].depth for i in live], dtype=torch.int32)
        forbidden = ~self.allowed[variants] | (self.min_depth[variants] + depths[:, None] < 0)
        broken = torch.tensor([states[i].broken for i in live])
        forbidden[broken] = False  # a prefix broken before the constraint applied: leave it to the model
        can_end = torch.tensor([states[i].can_end() or states[i].broken for i in live])
        forbidden[:, self.eos] = ~can_end
        forbidden = forbidden.to(scores.device)
        vocab = min(scores.shape[-1], forbidden.shape[-1])
        sub = scores[index, :vocab].masked_fill(forbidden[:, :vocab], float("-inf"))
        scores = scores.clone()
        scores[index, :vocab] = sub
        if scores.shape[-1] > vocab:  # model rows past the tokenizer's vocabulary (padding): never SMILES
            scores[index, vocab:] = float("-inf")
        return scores


def _variant_start(variant: int) -> SmilesState:
    not_started = variant % 2 == 1
    bracket, percent = divmod(variant // 2, 3)
    return SmilesState(bracket=bool(bracket), percent=percent, started=not not_started)


def _token_effect(start: SmilesState, text: str) -> tuple[bool, int]:
    """Whether ``text`` can follow a state like ``start`` (at enough branch depth), and the lowest
    branch depth it reaches relative to the start (the depth it needs is minus that)."""
    word = text.lstrip(" ")
    if word.isascii() and word.isalpha():  # most of a shared vocabulary: atoms or words, no syntax in them
        leading_space = len(word) < len(text)
        return start.percent == 0 and not (leading_space and start.started), 0
    probe = SmilesState(depth=10_000, rings=0, bracket=start.bracket, percent=start.percent, started=start.started)
    lowest = 0
    state = probe
    for ch in text:
        state = advance(state, ch)
        if state.broken:
            return False, 0
        lowest = min(lowest, state.depth - probe.depth)
    return True, lowest
