"""Valence and ring-bond checks for SMILES written a token at a time (text2mol decoding).

Once :mod:`t2m.decoding.smiles_grammar` keeps a small model's SMILES syntactic, what RDKit still refuses is
chemistry: on 300 dev rows of the shipped model at beam 5, after the syntax constraint, the outputs no beam
of which parsed were an oxygen or carbon with one bond too many (``C(=OC)``, a fifth bond on ``[C@@H]``), a
ring bond from an atom to itself (``C77``) or doubling a bond that is already there (``C6=C6``).
:func:`advance_valence` follows a prefix atom by atom and says when it breaks one of these rules:

- an atom's bonds (bond orders summed, ring bonds counted from where they open, hydrogens written in a
  bracket atom included) exceed the most RDKit allows for that element, charge and hydrogen count;
- a ring bond closes on the atom that opened it, or between two atoms already bonded;
- a bond symbol, branch or ring bond with no atom before it, or on an atom with no bond left for it;
- an atom outside brackets that is not in the organic subset, or a bracket atom that cannot be one
  (``[C@HeCC...``).

The limits are RDKit's own: :func:`max_valence` asks the pinned RDKit the most bonds it accepts on each
atom type (and remembers it), so the check never refuses what RDKit parses. Aromatic
(lowercase) atoms, ``*``, metals and any atom RDKit accepts with eight bonds are not limited. The state is
immutable and small (only atoms that can still take a bond are kept), so a decoder can keep one per
hypothesis.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple, Sequence

from t2m.chem import molecule

UNLIMITED = 64  # more bonds than any SMILES atom gets
_ORGANIC = {"B", "C", "N", "O", "P", "S", "F", "I", "Cl", "Br"}
_AROMATIC = set("bcnops")
_BOND_ORDER = {"-": 1, "=": 2, "#": 3, "$": 4, ":": 1, "/": 1, "\\": 1}
# what a bracket atom may hold so far: every part of _BRACKET optional, in its order
_BRACKET_PREFIX = re.compile(
    r"^\d{0,3}(?:[A-Z][a-z]?|[a-z][a-z]?|\*)?"
    r"(?:@(?:@|T(?:[HB]\d{0,2})?|A(?:L\d?)?|S(?:P\d?)?|O(?:H\d{0,2})?)?)?"
    r"(?:H\d?)?(?:[+-]{1,2}\d?)?(?::\d{0,3})?$")  # [13CH3:2], [Ca+2], [N@@+]
_BRACKET = re.compile(r"^(\d*)([A-Z][a-z]?|[a-z][a-z]?|\*)(@@?|@TH\d|@AL\d|@SP\d|@TB\d+|@OH\d+)?(H\d*)?"
                      r"([+-]+\d*)?(:\d+)?$")


@lru_cache(maxsize=None)
def max_valence(symbol: str, charge: int = 0, hydrogens: int | None = None) -> int:
    """The most bonds (orders summed) RDKit accepts on ``symbol`` with ``charge`` and, in brackets, ``hydrogens``
    explicit hydrogens (None: an organic-subset atom outside brackets), tried with up to four double bonds to
    oxygen and single bonds to carbon or oxygen; :data:`UNLIMITED` when RDKit accepts eight, or none."""
    if hydrogens is None:
        atom = symbol
    else:
        sign = "+" if charge > 0 else "-"
        atom = f"[{symbol}{'H' + str(hydrogens) if hydrogens else ''}{sign + str(abs(charge)) if charge else ''}]"
    best = -1
    # single bonds to carbon or oxygen after double bonds to oxygen: RDKit's clean-up accepts nitro N(=O)=O
    # and perchlorate OCl(=O)(=O)=O as charge-separated forms, so their limits depend on the neighbours
    for doubles in range(5):
        for single in ("(C)", "(O)"):
            for singles in range(9 - 2 * doubles):
                if molecule(atom + "(=O)" * doubles + single * singles) is not None:
                    best = max(best, 2 * doubles + singles)
    return UNLIMITED if best < 0 or best >= 8 else best


def _charge(text: str) -> int:
    if not text:
        return 0
    digits = text.lstrip("+-")
    size = int(digits) if digits else len(text)
    return size if text[0] == "+" else -size


def bracket_capacity(text: str) -> int | None:
    """The bonds a bracket atom (``text`` without the brackets, e.g. ``C@@H``, ``NH3+``) can take; None when
    it is not a bracket atom RDKit could parse."""
    match = _BRACKET.match(text)
    if not match:
        return None
    _, symbol, _, hydrogens, charge, _ = match.groups()
    if symbol == "*" or symbol[0].islower():
        return UNLIMITED
    count = (int(hydrogens[1:]) if len(hydrogens) > 1 else 1) if hydrogens else 0
    return max_valence(symbol, _charge(charge or ""), count)


class Atom(NamedTuple):
    """An atom that can still take bonds: its number in the SMILES, the bonds it can take, the bond
    orders it has, and the numbers of its neighbours."""

    index: int
    capacity: int
    used: int = 0
    neighbours: tuple[int, ...] = ()


class ValenceState(NamedTuple):
    """What a prefix leaves for the atoms to come: the current atom, the atoms open branches return to,
    open ring bonds (label, opening atom's number, bond order reserved on it), a bond
    symbol waiting for its atom, a bracket atom or ``%`` label being written, and whether the last
    character was a ``C`` or ``B`` that an ``l`` or ``r`` makes ``Cl`` or ``Br``."""

    current: int | None = None
    atoms: tuple[Atom, ...] = ()  # every atom that can still take a bond: current, branch points, ring openers
    stack: tuple[int, ...] = ()
    rings: tuple[tuple[int, int, int], ...] = ()  # (label, opener, order)
    bond: int | None = None
    bracket: str | None = None
    percent: str | None = None
    two_letter: str = ""
    next_index: int = 0


def _atom(state: ValenceState, index: int) -> Atom:
    for atom in state.atoms:
        if atom.index == index:
            return atom
    raise KeyError(index)


def _free(state: ValenceState) -> int:
    """Bonds the current atom can still take."""
    atom = _atom(state, state.current)
    return atom.capacity - atom.used


def _moved(current: int | None, atoms: Sequence[Atom], stack: tuple[int, ...], rings: tuple, next_index: int,
           two_letter: str = "") -> ValenceState:
    """The state once the current atom, branch stack or ring bonds changed: only the atoms still able to
    take a bond (current, branch points, ring openers) are kept, and nothing is pending."""
    live = set(stack) | {ring[1] for ring in rings} | ({current} if current is not None else set())
    return ValenceState(current, tuple(a for a in atoms if a.index in live), stack, rings, None, None, None,
                        two_letter, next_index)


def _add_atom(state: ValenceState, capacity: int, two_letter: str = "") -> ValenceState | None:
    index = state.next_index
    atoms = list(state.atoms)
    new = Atom(index, capacity)
    if state.current is not None:
        order = state.bond or 1
        previous = _atom(state, state.current)
        if previous.used + order > previous.capacity or order > capacity:
            return None
        atoms[atoms.index(previous)] = previous._replace(used=previous.used + order,
                                                         neighbours=previous.neighbours + (index,))
        new = Atom(index, capacity, order, (previous.index,))
    elif state.bond is not None:
        return None  # a bond symbol after '.' or at the start
    atoms.append(new)
    return _moved(index, atoms, state.stack, state.rings, index + 1, two_letter)


def _retype(state: ValenceState, symbol: str) -> ValenceState | None:
    """The current ``C``/``B`` turned into ``Cl``/``Br`` by the letter after it."""
    atom = _atom(state, state.current)
    capacity = max_valence(symbol)
    if atom.used > capacity:
        return None
    atoms = tuple(a._replace(capacity=capacity) if a.index == atom.index else a for a in state.atoms)
    return state._replace(atoms=atoms, two_letter="")


def _ring_bond(state: ValenceState, label: int) -> ValenceState | None:
    if state.current is None:
        return None
    current = _atom(state, state.current)
    open_ring = next((ring for ring in state.rings if ring[0] == label), None)
    if open_ring is None:
        order = state.bond or 1
        if current.used + order > current.capacity:
            return None
        atoms = tuple(a._replace(used=a.used + order) if a.index == current.index else a for a in state.atoms)
        rings = state.rings + ((label, current.index, order),)
        return state._replace(atoms=atoms, rings=rings, bond=None, percent=None, two_letter="")
    _, opener_index, reserved = open_ring
    if opener_index == current.index or opener_index in current.neighbours:
        return None  # a ring bond from an atom to itself, or doubling a bond
    order = state.bond or reserved  # written at either end, or single
    opener = _atom(state, opener_index)
    if current.used + order > current.capacity or opener.used - reserved + order > opener.capacity:
        return None
    atoms = []
    for a in state.atoms:
        if a.index == current.index:
            a = a._replace(used=a.used + order, neighbours=a.neighbours + (opener_index,))
        elif a.index == opener_index:
            a = a._replace(used=a.used - reserved + order, neighbours=a.neighbours + (current.index,))
        atoms.append(a)
    rings = tuple(ring for ring in state.rings if ring[0] != label)
    return _moved(state.current, atoms, state.stack, rings, state.next_index)


def advance_valence(state: ValenceState | None, text: str) -> ValenceState | None:
    """The state after writing ``text`` in ``state``; None once the prefix breaks a rule (see the module)."""
    for ch in text:
        if state is None:
            return None
        if state.bracket is not None:
            if ch != "]":
                if not _BRACKET_PREFIX.match(state.bracket + ch):
                    return None  # no bracket atom starts so (a runaway inside "[...")
                state = state._replace(bracket=state.bracket + ch)
                continue
            capacity = bracket_capacity(state.bracket)
            state = None if capacity is None else _add_atom(state._replace(bracket=None), capacity)
        elif state.percent is not None:
            if not ch.isdigit():
                return None
            label = state.percent + ch
            state = state._replace(percent=label) if len(label) < 2 else _ring_bond(state, int(label))
        elif ch == " ":
            continue  # a SentencePiece word start before the first character; the syntax check rules on spaces
        elif ch == "[":
            state = state._replace(bracket="", two_letter="")
        elif ch in ("l", "r") and state.two_letter == ("C" if ch == "l" else "B"):
            state = _retype(state, state.two_letter + ch)
        elif ch in _AROMATIC or ch == "*":
            state = _add_atom(state, UNLIMITED)
        elif ch.isalpha():
            if ch not in _ORGANIC:
                return None
            state = _add_atom(state, max_valence(ch), ch if ch in ("C", "B") else "")
        elif ch in _BOND_ORDER:
            if state.current is None or state.bond is not None or _free(state) < _BOND_ORDER[ch]:
                return None
            state = state._replace(bond=_BOND_ORDER[ch], two_letter="")
        elif ch.isdigit():
            state = _ring_bond(state, int(ch))
        elif ch == "%":
            state = state._replace(percent="", two_letter="")
        elif ch == "(":
            if state.current is None or state.bond is not None or _free(state) < 1:
                return None  # a branch on an atom with no bond left could hold nothing
            state = state._replace(stack=state.stack + (state.current,), two_letter="")
        elif ch == ")":
            if not state.stack or state.bond is not None:
                return None
            state = _moved(state.stack[-1], state.atoms, state.stack[:-1], state.rings, state.next_index)
        elif ch == ".":
            if state.bond is not None:
                return None
            state = _moved(None, state.atoms, state.stack, state.rings, state.next_index)
        else:
            return None
    return state
