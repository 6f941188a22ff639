"""SMILES syntax constraint for text2mol decoding.

A small model's SMILES are mostly invalid for syntax, not chemistry: on 150 dev rows the shipped model's
top beam closed a branch that was never opened in 69 outputs, left one open in 14 and a ring bond open in
4, against 1 valence error. :class:`SmilesSyntaxProcessor` is a ``transformers`` logits processor that
forbids, at every step and for every hypothesis, the tokens that would break SMILES syntax:

- a ``)`` with no open branch, a ``[`` inside a bracket atom, a ``]`` outside one;
- inside a bracket atom, anything but its grammar ``[isotope symbol chirality H-count charge :class]`` (so a
  bracket atom cannot run on over the rest of the molecule, as ``[H2+2:111CCCC...`` did);
- a ring bond (digit or ``%nn``) or a ``.`` or ``(`` where no atom precedes it (first, after ``.``, ``(`` or,
  for a ring bond, a bond written just after ``(``), a ``)`` right after ``(``, a bond or ``.``, two bond
  symbols in a row (RDKit refuses ``C.1CC1``, ``C()``, ``C=(C)``, ``C=#C``);
- a ``%nn`` label under 10 (RDKit refuses ``%05``: ``5`` is that ring bond);
- a space after the first token (SMILES have none) and characters outside printable ASCII;
- the end-of-sequence token while a branch, a ring bond (``1``-``9``, ``%nn``) or a bracket atom is open,
  after a bond symbol, ``(`` or ``.``, or before any atom.

With ``max_new_tokens`` it also keeps every hypothesis able to finish in time: a hypothesis may only write a
token after which the tokens it still owes (one per open branch and bracket, a digit and an atom per open
ring bond, an atom after a bond, the end-of-sequence token: :func:`owed_tokens`) fit in the tokens left.
Without it a small model's runaway SMILES (a chain of rings that never closes) reach the length limit
unfinished and unparsable; with it they close their branches and rings and end by the limit.

With ``valence`` (the default) each hypothesis's best tokens are also checked against valences and ring
bonds (:mod:`t2m.decoding.smiles_valence`), a Python walk per token, so only as many as the search can pick. Aromaticity
and stereo are left to the model (and to valid-SMILES reranking). The syntax mask is exact for the syntax it
covers and cheap (per step, one dictionary lookup and one token transition per hypothesis, one vectorised
mask). Tokens are read through the tokenizer's own pieces (SentencePiece ``▁``
as a space, byte-fallback ``<0xNN>`` as that byte), so any T5 tokenizer works, MolT5's included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from t2m.decoding.smiles_valence import ValenceState, advance_valence

_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_BONDS = set("-=#$:/\\~")
# variants of the state a token's validity depends on: what came last outside brackets (8), the phase of a
# bracket atom (23), digits still owed to a '%nn' ring label (2)
_VARIANTS = 8 + 23 + 2

# What the last character outside brackets was: a ring bond (digit, ``%nn``), a branch, a bond or a ``.`` may
# only follow some of these (RDKit refuses ``C.1CC1``, ``C(1``, ``C=(C)``, ``C()``, ``C=#C``, ``C(=1CC1)``).
START, ATOM, RING, OPEN, CLOSE, BOND, BOND_OPEN, DOT = range(8)
_AFTER_ATOM = (ATOM, RING, CLOSE)  # where a ring bond, a branch, a ``)``, a ``.`` or the end may come

# Phases of a bracket atom ``[isotope symbol chirality H-count charge :class]``, each part optional but the
# symbol, in this order (the grammar of t2m.decoding.smiles_valence's _BRACKET): ``bracket`` is 0 outside one.
(I0, I1, I2, I3, S1, S2, C1, CXT, CXA, CXS, CXO, CY, C2, H1, H2, Q1, Q2, Q3, K0, K1, K2, K3, SH) = range(1, 24)
_BRACKET_PHASES = 23
_CLOSABLE = {SH, S1, S2, C1, C2, H1, H2, Q1, Q2, Q3, K1, K2, K3}  # a ``]`` may end the atom here
_CHIRAL_CLASS = {"T": CXT, "A": CXA, "S": CXS, "O": CXO}  # @TH @TB, @AL, @SP, @OH: a letter, then 1 or 2
_CHIRAL_LETTER = {CXT: "HB", CXA: "L", CXS: "P", CXO: "H"}


def _bracket_step(phase: int, ch: str, sign: str) -> int:
    """The phase after ``ch`` in a bracket atom at ``phase`` (``sign``: the charge sign written, if any);
    0 when ``ch`` cannot come there (RDKit's grammar: no leading zero in an isotope or a class, one charge
    digit after a single sign, none after two). ``]`` is handled by the caller."""
    if phase in (I0, I1, I2, I3):
        if ch.isdigit():
            return (I3 if ch == "0" else I1) if phase == I0 else phase + 1 if phase < I3 else 0
        if ch == "H":
            return SH  # hydrogen: [2H], [H+], Hg...: no chirality (RDKit refuses [H@])
        if ch.isalpha():
            return S1
        return S2 if ch == "*" else 0
    if phase in (S1, SH) and ch.islower():
        return S2
    if phase in _CHIRAL_LETTER:
        return CY if ch in _CHIRAL_LETTER[phase] else 0
    if phase == CY:
        return C2 if ch in "12" else 0
    if phase in (S1, S2) and ch == "@":
        return C1
    if phase == C1:
        if ch == "@":
            return C2
        if ch in _CHIRAL_CLASS:
            return _CHIRAL_CLASS[ch]
    if phase == H1 and ch.isdigit():
        return H2
    if phase == Q1 and ch == sign:
        return Q2
    if phase == Q1 and ch.isdigit():
        return Q3
    if phase == K0 and ch.isdigit():
        return K3 if ch == "0" else K1
    if phase in (K1, K2) and ch.isdigit():
        return phase + 1
    if ch == "H" and phase in (SH, S1, S2, C1, C2):
        return H1
    if ch in "+-" and phase in (SH, S1, S2, C1, C2, H1, H2):
        return Q1
    if ch == ":" and phase in (SH, S1, S2, C1, C2, H1, H2, Q1, Q2, Q3):
        return K0
    return 0


def _bracket_owed(phase: int) -> int:
    """Tokens that surely finish a bracket atom at ``phase``: the ``]``, and a symbol, a ``:`` class's digit
    or a chirality's letter and digit still missing."""
    return {I0: 2, I1: 2, I2: 2, I3: 2, CXT: 3, CXA: 3, CXS: 3, CXO: 3, CY: 2, K0: 2}.get(phase, 1) if phase else 0


@dataclass(frozen=True)
class SmilesState:
    """Syntax state after a prefix: open branches, open ring labels (bit set), the bracket atom's phase (0:
    outside one) and its charge sign, digits owed to a ``%`` label (and the label so far), whether any
    character was written, whether the last character was a bond symbol (or ``.``), what the last character
    outside brackets was (``prev``: :data:`START`, :data:`ATOM`, ...), whether the prefix is already broken,
    and how many atoms (up to two) were written since the last ring bond opened (or a branch closed), as a
    ring bond may close neither on the atom that opened it nor on the next."""

    depth: int = 0
    rings: int = 0
    bracket: int = 0
    percent: int = 0
    label: int = 0
    started: bool = False
    after_bond: bool = False
    broken: bool = False
    ring_age: int = 2
    prev: int = START
    sign: str = ""

    def variant(self) -> int:
        if self.bracket:
            return 8 + self.bracket - 1
        if self.percent:
            return 8 + _BRACKET_PHASES + self.percent - 1
        return self.prev

    def can_end(self) -> bool:
        return (not self.broken and self.started and self.depth == 0 and self.rings == 0 and not self.bracket
                and self.percent == 0 and self.prev in _AFTER_ATOM)


def advance(state: SmilesState, text: str) -> SmilesState:
    """The state after writing ``text`` (a token's surface string) in ``state``."""
    if state.broken:
        return state
    depth, rings, bracket, percent, label = state.depth, state.rings, state.bracket, state.percent, state.label
    started, age, prev, sign = state.started, state.ring_age, state.prev, state.sign
    for ch in text:
        if ch == " ":
            if started:
                return _BROKEN
            continue
        if not (" " < ch < "\x7f"):
            return _BROKEN
        if percent:
            if not ch.isdigit() or (percent == 2 and ch == "0"):
                return _BROKEN  # RDKit reads '%nn' labels from 10 on: it refuses %05 (5 is that ring bond)
            label = label * 10 + int(ch)
            percent -= 1
            if percent == 0:
                rings ^= 1 << label
                age = 0 if rings >> label & 1 else age
                prev = RING
            started = True
            continue
        if bracket:
            if ch == "]":
                if bracket not in _CLOSABLE:
                    return _BROKEN
                bracket, age, prev, sign = 0, min(age + 1, 2), ATOM, ""
            else:
                bracket = _bracket_step(bracket, ch, sign)
                if not bracket:
                    return _BROKEN
                if bracket == Q1:
                    sign = ch
            started = True
            continue
        if ch == "]":
            return _BROKEN
        if ch == "[":
            bracket, sign = I0, ""
        elif ch == "(":
            if prev not in _AFTER_ATOM:
                return _BROKEN
            depth += 1
            prev = OPEN
        elif ch == ")":
            depth -= 1
            if depth < 0 or prev not in _AFTER_ATOM:
                return _BROKEN
            age = 0  # back on an atom that may be a ring bond's opener
            prev = CLOSE
        elif ch == "%" or ch.isdigit():
            if prev not in (*_AFTER_ATOM, BOND):
                return _BROKEN
            if ch == "%":
                percent, label = 2, 0
            else:
                rings ^= 1 << int(ch)
                age = 0 if rings >> int(ch) & 1 else age
                prev = RING
        elif ch == ".":
            if prev not in _AFTER_ATOM:
                return _BROKEN
            prev = DOT
        elif ch in _BONDS:
            if prev not in (*_AFTER_ATOM, OPEN):
                return _BROKEN
            prev = BOND_OPEN if prev == OPEN else BOND
        else:  # an atom (the l of Cl and r of Br are part of one; which letters make one is the valence check's)
            if not (ch.isalpha() or ch == "*"):
                return _BROKEN  # '+', '@', '&', ...: only inside a bracket atom, or nowhere
            if ch.isupper() or ch in "bcnops*":
                age = min(age + 1, 2)
            prev = ATOM
        started = True
    return SmilesState(depth, rings, bracket, percent, label, started, prev in (BOND, BOND_OPEN, DOT), ring_age=age,
                       prev=prev, sign=sign)


_BROKEN = SmilesState(broken=True)

# a translation's flags (t2m.decoding.translator.Translation.flags) for a SMILES output whose syntax is not complete
FLAG_UNFINISHED = ("SMILES unfinished when decoding stopped (empty, or a branch, ring bond or bracket atom open): "
                   "raise --max-new-tokens")
FLAG_BROKEN_SYNTAX = "SMILES syntax broken (decoded without the syntax constraint, --no-smiles-syntax)"


def syntax_flags(smiles: str) -> list[str]:
    """The flag naming why ``smiles`` (a decoded output) is no complete SMILES, if it is not: its syntax
    broken, or left unfinished -- empty, or with something open (under the constraints, only a length budget
    too small to write and close an atom does that); [] for a complete one."""
    state = advance(SmilesState(), smiles.strip())
    return [FLAG_BROKEN_SYNTAX] if state.broken else [] if state.can_end() else [FLAG_UNFINISHED]
# valence-checked tokens kept per hypothesis when sampling (and by default): sampling is top-k from these
SAMPLED_CANDIDATES = 50
# ... looked for among the best this many times as many tokens, at most, once one passed: a hypothesis whose
# atom has no bond left fails most tokens, and those far down its list are not what a search picks
_VALENCE_LOOKS = 4
_UNREACHABLE = 1 << 20  # owed tokens of a broken prefix, or of a token no SMILES may hold


def owed_tokens(state: SmilesState) -> int:
    """The tokens that surely complete ``state`` and end it, end-of-sequence token included, when the
    vocabulary has the one-character tokens (``)``, ``]``, digits, an atom): one per open branch, bracket and
    ``%`` digit still owed, two per open ring bond (its digit, three for a ``%nn`` label, and an atom to close
    it on: closing several on one atom would overfill it), up to two more atoms while a ring bond is open (it
    may close neither on the atom that opened it nor on the next), one atom when nothing was written or a
    bond symbol, ``(`` or ``.`` was last, a symbol more in a bracket atom
    that has none yet (and a class digit, a chirality's letter and digit), one to end. Inside a ``%nn``
    label, the cheapest label it can still become: one closing an open ring bond, else a new ring bond it
    then owes (:func:`_label_owed`)."""
    if state.broken:
        return _UNREACHABLE
    if state.percent:
        return _label_owed(state)
    rings = sum(2 if label < 10 else 4 for label in range(100) if state.rings >> label & 1) if state.rings else 0
    return (state.depth + rings + (2 - state.ring_age) * bool(state.rings) + _bracket_owed(state.bracket) + 1
            # an atom after a bond, a '(' or a '.' (or first), counted apart from the atoms an open ring bond is
            # owed: were it one of them, writing it would leave the count where it was (the ring bond's digit still
            # counts an atom), and a hypothesis let in at the budget's edge could no longer end
            + int(not state.bracket and state.prev not in _AFTER_ATOM))


def _label_owed(state: SmilesState) -> int:
    """:func:`owed_tokens` inside a ``%nn`` label (``state.percent`` digits still owed after ``state.label``):
    its digits, then what the cheapest label it may become leaves owed -- a label closing an open ring bond,
    or the first label not open (a new ring bond, which must then be closed in turn, two atoms on). Without
    this a ``%`` written near the length limit opened a ring bond there was no room left to close."""
    labels = range(state.label * 10, state.label * 10 + 10) if state.percent == 1 else range(10, 100)
    opened = [label for label in labels if state.rings >> label & 1]
    fresh = next((label for label in labels if not state.rings >> label & 1), None)
    best = _UNREACHABLE
    for label in opened + ([fresh] if fresh is not None else []):
        digits = f"{label:02d}"[2 - state.percent:]
        best = min(best, owed_tokens(advance(state, digits)))
    return state.percent + best


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

    def __init__(self, tokenizer: Any, eos_token_id: int | None = None, pad_token_id: int | None = None,
                 max_new_tokens: int | None = None, valence: bool = True, candidates: int = SAMPLED_CANDIDATES):
        import torch

        self.max_new_tokens = max_new_tokens
        self.valence = valence
        self.candidates = candidates
        self.prune_dead_ends = False  # beam search: a hypothesis no token can continue is dropped (limited())
        self._valence: dict[tuple[int, ...], Any] = {}
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
        self._owed_after: dict[SmilesState, Any] = {}  # state with depth 0 -> owed tokens after each token
        # the most owed tokens one token can add (8 with the shipped tokenizer: a '%' that must open a ring bond,
        # its label's digits and closing owed): a hypothesis with more slack than that is left alone
        # (from every variant of the state, with no ring bond open and with one; letters alone owe nothing more)
        starts = [replace(start, rings=rings) for start in map(_variant_start, range(_VARIANTS)) for rings in (0, 2)]
        texts = [text for text in self.surfaces if text and not text.lstrip(" ").isalpha()]
        self._max_growth = max([owed_tokens(after) - owed_tokens(start) for start in starts for text in texts
                                if not (after := advance(start, text)).broken], default=0) + 1

    def limited(self, max_new_tokens: int | None, num_beams: int = 1, sampling: bool = False,
                valence: bool | None = None) -> "SmilesSyntaxProcessor":
        """This processor (its tables shared, not rebuilt) for decodings of at most ``max_new_tokens`` new
        tokens, which every hypothesis then completes within (None: no length budget), keeping as many
        valence-checked tokens per hypothesis as the search looks at: ``2 * num_beams`` for beam search, 1
        for greedy search, :data:`SAMPLED_CANDIDATES` when sampling; ``valence`` False: syntax alone."""
        import copy

        other = copy.copy(self)
        other.max_new_tokens = max_new_tokens
        other.valence = self.valence if valence is None else valence
        other.prune_dead_ends = num_beams > 1 and not sampling
        other.candidates = SAMPLED_CANDIDATES if sampling else 2 * num_beams if num_beams > 1 else 1
        other._states, other._valence = {}, {}
        return other

    def owed_after(self, state: SmilesState) -> Any:
        """A tensor of :func:`owed_tokens` after each token written in ``state`` (a large number for a token
        that breaks syntax or is special); built once per state (branch depth aside) and cached."""
        import torch

        key = replace(state, depth=0)
        table = self._owed_after.get(key)
        if table is None:
            deep = replace(state, depth=1 << 16)  # deep enough for any ')' to close a branch
            base = owed_tokens(deep)
            table = torch.tensor([owed_tokens(advance(deep, text)) - base if text else _UNREACHABLE
                                  for text in self.surfaces], dtype=torch.int32)
            if len(self._owed_after) > 4096:
                self._owed_after.clear()
            self._owed_after[key] = table
        return table + owed_tokens(state)

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

    def valence_of(self, tokens: list[int]) -> Any:
        """The :class:`t2m.decoding.smiles_valence.ValenceState` after ``tokens``; None once they broke a valence or
        ring-bond rule (and stay broken)."""
        key = tuple(tokens)
        if key in self._valence:
            return self._valence[key]
        parent = self.valence_of(tokens[:-1]) if tokens else ValenceState()
        state = parent if not tokens else advance_valence(parent, self.surfaces[tokens[-1]] or "\x00")
        self._valence[key] = state
        return state

    def __call__(self, input_ids, scores):
        import torch

        rows = input_ids[:, 1:].tolist()  # drop the decoder start token
        length = len(rows[0]) if rows else 0
        # keep only the states of this step's prefixes' parents: memory stays O(hypotheses x length)
        self._states = {k: v for k, v in self._states.items() if len(k) == length - 1} if length else {}
        self._valence = {k: v for k, v in self._valence.items() if len(k) == length - 1} if length else {}
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
        if self.max_new_tokens is not None:
            self._forbid_overruns(forbidden, [states[i] for i in live], self.max_new_tokens - length)
        forbidden = forbidden.to(scores.device)
        vocab = min(scores.shape[-1], forbidden.shape[-1])
        sub = scores[index, :vocab].masked_fill(forbidden[:, :vocab], float("-inf"))
        if self.valence:
            sub = self._keep_valences(sub, [rows[i] for i in live], [states[i] for i in live])
        scores = scores.clone()
        scores[index, :vocab] = sub
        if scores.shape[-1] > vocab:  # model rows past the tokenizer's vocabulary (padding): never SMILES
            scores[index, vocab:] = float("-inf")
        return scores

    def _keep_valences(self, sub: Any, rows: list[list[int]], states: list[SmilesState]) -> Any:
        """``sub`` (one row per live hypothesis, syntax already masked) keeping, for each hypothesis, its best
        :attr:`candidates` tokens that break no valence or ring-bond rule (:mod:`t2m.decoding.smiles_valence`) and
        no other: tokens are checked best first -- a Python walk each -- until that many pass (beam search
        picks each step's hypotheses among each one's best ``2 * num_beams`` tokens, greedy search the best
        one, so they decode as if every token had been checked), or, once one has passed, until the best
        ``_VALENCE_LOOKS`` times as many were looked at. A hypothesis with no passing token at all is
        dropped in beam search (every token ``-inf``: the other beams go on) and otherwise keeps its scores,
        as one already broken does (greedy search and sampling need a token)."""
        import torch

        need, vocab = self.candidates, sub.shape[1]
        width = min(vocab, need + 4)
        best = sub.topk(width, dim=1)
        order, values = best.indices.tolist(), best.values.tolist()
        keep_rows, keep_tokens, constrained = [], [], []
        for row, (tokens, state) in enumerate(zip(rows, states)):
            chemistry = None if state.broken else self.valence_of(tokens)
            if chemistry is None:
                continue
            candidates, scores, seen, kept = order[row], values[row], width, []
            while True:
                for token, score in zip(candidates, scores):
                    if score == float("-inf"):
                        break
                    if token == self.eos or advance_valence(chemistry, self.surfaces[token] or "\x00") is not None:
                        kept.append(token)
                        if len(kept) >= need:
                            break
                if (len(kept) >= need or (kept and seen >= _VALENCE_LOOKS * need) or seen >= vocab or not scores
                        or scores[-1] == float("-inf")):
                    break
                further = sub[row].topk(min(vocab, 2 * seen))  # too few passed: look further down
                candidates, scores = further.indices[seen:].tolist(), further.values[seen:].tolist()
                seen = min(vocab, 2 * seen)
            if kept or self.prune_dead_ends:
                constrained.append(row)
                keep_rows += [row] * len(kept)
                keep_tokens += kept
        if constrained:
            drop = torch.zeros_like(sub, dtype=torch.bool)
            drop[constrained] = True
            drop[keep_rows, keep_tokens] = False
            sub = sub.masked_fill(drop, float("-inf"))
        return sub

    def _forbid_overruns(self, forbidden: Any, states: list[SmilesState], left: int) -> None:
        """Forbid, in place, the tokens after which a hypothesis could not end within the ``left`` tokens
        (this step's included). A hypothesis with no token left (a prefix given to the processor already
        past its budget) keeps the syntax mask alone."""
        for row, state in enumerate(states):
            if state.broken or left - owed_tokens(state) > self._max_growth:
                continue
            overrun = self.owed_after(state) > left - 1
            overrun[self.eos] = left < 1  # the end-of-sequence token owes nothing; can_end decided it
            vocab = min(len(overrun), forbidden.shape[1])
            row_mask = forbidden[row, :vocab] | overrun[:vocab]
            if not row_mask.all():
                forbidden[row, :vocab] = row_mask


def _variant_start(variant: int) -> SmilesState:
    if variant < 8:
        return SmilesState(prev=variant, started=variant != START, after_bond=variant in (BOND, BOND_OPEN, DOT))
    if variant < 8 + _BRACKET_PHASES:  # the charge sign is not in the variant: a second sign is checked per token
        return SmilesState(bracket=variant - 8 + 1, started=True)
    return SmilesState(percent=variant - 8 - _BRACKET_PHASES + 1, started=True, prev=ATOM)


def _token_effect(start: SmilesState, text: str) -> tuple[bool, int]:
    """Whether ``text`` can follow a state like ``start`` (at enough branch depth), and the lowest
    branch depth it reaches relative to the start (the depth it needs is minus that)."""
    word = text.lstrip(" ")
    if word.isascii() and word.isalpha() and not start.bracket:  # most of a shared vocabulary: atoms or words
        leading_space = len(word) < len(text)
        return start.percent == 0 and not (leading_space and start.started), 0
    probe = replace(start, depth=10_000, rings=0)
    lowest = 0
    state = probe
    for ch in text:
        state = advance(state, ch)
        if state.broken:
            return False, 0
        lowest = min(lowest, state.depth - probe.depth)
    return True, lowest
