"""SMILES through RDKit: the one place in t2m where molecules are parsed, canonicalised, fingerprinted and
drawn.

RDKit is kept quiet one way: every call here runs RDKit inside :func:`quiet` (``rdBase.BlockLogs()``, a
context manager that silences RDKit's log for the call and then restores it), so a SMILES RDKit cannot
parse is an answer (None, False or the caller's ``default``), not a message on stderr. Nothing here
changes RDKit's logging for the whole process. Code that runs other RDKit work around these calls (the
bench, whose evaluator parses thousands of candidates) wraps it in :func:`quiet` too.

Failure behaviour, per function: :func:`molecule` and :func:`canonical_smiles` give None (or ``default``)
for an empty SMILES or one RDKit cannot parse; the fingerprints and drawings also give None for a molecule
without atoms; :func:`is_valid_smiles` is False for all three.

``evaluation/`` keeps its own parsing (it does not import t2m, and follows MolT5's scripts exactly).
RDKit is imported on first use, so importing this module does not import RDKit.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Sequence


def quiet() -> Any:
    """A context manager that silences RDKit's log while inside (``rdBase.BlockLogs()``)."""
    from rdkit import rdBase

    return rdBase.BlockLogs()


def _parse(smiles: str) -> Any:
    from rdkit import Chem

    with quiet():
        return Chem.MolFromSmiles(smiles)


def molecule(smiles: str) -> Any:
    """The RDKit molecule of ``smiles``; None when ``smiles`` is empty or RDKit cannot parse it."""
    return _parse(smiles) if smiles else None


def is_valid_smiles(smiles: str) -> bool:
    """True when RDKit parses ``smiles`` into a molecule with at least one atom (False for an empty or
    blank SMILES)."""
    if not smiles or not smiles.strip():
        return False
    mol = _parse(smiles)
    return mol is not None and mol.GetNumAtoms() > 0


def canonical_smiles(smiles: str, default: str | None = None) -> str | None:
    """RDKit canonical isomeric SMILES of ``smiles``; ``default`` when ``smiles`` is empty or RDKit cannot
    parse it. ``canonical_smiles(s, default=s)`` is a key under which two pairs are the same molecule (an
    unparsable SMILES is only its own text); the decoder's canonical output uses ``default=None``."""
    from rdkit import Chem

    mol = molecule(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else default


def randomized_smiles(smiles: str, rng: random.Random) -> str:
    """A random valid SMILES of the same molecule (RDKit's seed drawn from ``rng``), or ``smiles`` itself
    when RDKit cannot parse it. An empty SMILES parses to an empty molecule here and still draws from
    ``rng`` (training's augmentation stream depends on it)."""
    from rdkit import Chem

    mol = _parse(smiles)
    if mol is None:
        return smiles
    try:
        with quiet():
            return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=rng.randrange(1, 2**31))[0]
    except Exception:  # noqa: BLE001 - RDKit raises many kinds
        return smiles


@functools.lru_cache(maxsize=4)
def _morgan_generator(radius: int, n_bits: int) -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def _with_atoms(smiles: str) -> Any:
    mol = molecule(smiles)
    return None if mol is None or mol.GetNumAtoms() == 0 else mol


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> list:
    """The Morgan bit vector (``ExplicitBitVect``) of each SMILES; None where RDKit cannot parse it or it has
    no atoms (one generator for all)."""
    generator = _morgan_generator(radius, n_bits)
    out = []
    for smi in smiles:
        mol = _with_atoms(smi)
        out.append(None if mol is None else generator.GetFingerprint(mol))
    return out


def morgan_fingerprint(smiles: str, radius: int = 2, n_bits: int = 2048) -> Any:
    """:func:`morgan_fingerprints` of one SMILES."""
    return morgan_fingerprints([smiles], radius, n_bits)[0]


def ranker_fingerprints(smiles: str) -> tuple | None:
    """(Morgan r=2 2048 bits, MACCS keys, RDKit fingerprint, heavy-atom count) of ``smiles`` -- what the
    neighbour ranker compares molecules by; None when RDKit cannot parse it or it has no atoms."""
    from rdkit import Chem
    from rdkit.Chem import MACCSkeys

    mol = _with_atoms(smiles)
    if mol is None:
        return None
    with quiet():
        return (_morgan_generator(2, 2048).GetFingerprint(mol), MACCSkeys.GenMACCSKeys(mol), Chem.RDKFingerprint(mol),
                mol.GetNumHeavyAtoms())


def molecule_svg(smiles: str, width: int = 220, height: int = 160, bond_length: float | None = None) -> str | None:
    """An RDKit 2D drawing of ``smiles`` as SVG text; None when RDKit cannot parse it or it has no atoms.
    ``bond_length``: the longest a bond is drawn, in pixels (small molecules are then not blown up to fill
    the drawing; large ones still shrink to fit)."""
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = _with_atoms(smiles)
    if mol is None:
        return None
    try:
        with quiet():
            drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
            if bond_length:
                drawer.drawOptions().fixedBondLength = bond_length
            rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
            drawer.FinishDrawing()
            return drawer.GetDrawingText()
    except (RuntimeError, ValueError):
        return None
