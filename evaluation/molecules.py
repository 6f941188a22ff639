"""Per-molecule and per-row RDKit work for the text2mol metrics (run in worker processes).

Each SMILES is parsed once; from the molecule come its InChI (exact match), MACCS keys, RDKit path
fingerprint and Morgan radius-2 count fingerprint (similarities) and its canonical SMILES (FCD input) --
the same calls MolT5's three scripts make on freshly parsed molecules (the tests check the values agree on
every molecule of the published prediction files).

Plain functions that return ``None`` for a SMILES RDKit cannot read; RDKit's own warnings are silenced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

MORGAN_RADIUS = 2


class MolRecord(NamedTuple):
    """What the metrics need from one SMILES string (picklable, for worker processes and the cache)."""

    parsed: bool  # Chem.MolFromSmiles succeeded (an empty string parses to an empty molecule)
    num_atoms: int
    inchi: str | None  # None if Chem.MolToInchi raised
    maccs: bytes | None  # ExplicitBitVect.ToBinary()
    rdk: bytes | None  # ExplicitBitVect.ToBinary()
    morgan: bytes | None  # UIntSparseIntVect.ToBinary()
    canonical: str | None  # fcd.canonical(smiles): Chem.MolToSmiles(Chem.MolFromSmiles(s)), None on failure


class RowScore(NamedTuple):
    """Per-row results in both modes; the aggregation in :mod:`evaluation.text2mol` picks what a mode uses."""

    inchi_failed: bool  # MolT5's "bad" row: output or reference unparsable, or InChI raised
    inchi_equal: bool  # InChIs equal (MolT5 counts this as exact, even if both are empty)
    inchi_nonempty: bool  # the output's InChI is not empty
    output_parsed: bool
    output_atoms: int
    reference_parsed: bool
    similarities: tuple[float, float, float] | None  # (MACCS, RDK, Morgan) Tanimoto; None if either side unparsable
    output_canonical: str | None  # canonical SMILES of (output or "[]") for FCD


def _quiet_rdkit():
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def molecule_record(smiles: str) -> MolRecord:
    """Parse ``smiles`` once and compute everything the metrics need from it."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors  # (not AllChem/MACCSkeys, which re-export these: 0.07 s of imports)

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return MolRecord(False, 0, None, None, None, None, None)
    try:
        canonical = Chem.MolToSmiles(mol)
    except Exception:  # fcd.canonical's except clause
        canonical = None
    try:
        inchi = Chem.MolToInchi(mol)
    except Exception:
        inchi = None
    return MolRecord(
        True,
        mol.GetNumAtoms(),
        inchi,
        rdMolDescriptors.GetMACCSKeysFingerprint(mol).ToBinary(),  # = MACCSkeys.GenMACCSKeys
        Chem.RDKFingerprint(mol).ToBinary(),
        rdMolDescriptors.GetMorganFingerprint(mol, MORGAN_RADIUS).ToBinary(),  # = AllChem.GetMorganFingerprint
        canonical,
    )


def _fingerprints(record: MolRecord):
    from rdkit import DataStructs

    return (
        DataStructs.ExplicitBitVect(record.maccs),
        DataStructs.ExplicitBitVect(record.rdk),
        DataStructs.UIntSparseIntVect(record.morgan),
    )


def row_score(reference: MolRecord, output: MolRecord, output_is_empty: bool) -> RowScore:
    """Compare one output with its reference (MolT5's per-row logic, plus what strict mode needs)."""
    from rdkit import DataStructs

    both = reference.parsed and output.parsed
    inchi_failed = not both or reference.inchi is None or output.inchi is None
    inchi_equal = not inchi_failed and reference.inchi == output.inchi
    sims = None
    if both:
        g = _fingerprints(reference)
        o = _fingerprints(output)
        sims = (
            DataStructs.FingerprintSimilarity(g[0], o[0], metric=DataStructs.TanimotoSimilarity),
            DataStructs.FingerprintSimilarity(g[1], o[1], metric=DataStructs.TanimotoSimilarity),
            DataStructs.TanimotoSimilarity(g[2], o[2]),
        )
    return RowScore(
        inchi_failed,
        inchi_equal,
        bool(output.inchi),
        output.parsed,
        output.num_atoms,
        reference.parsed,
        sims,
        None if output_is_empty else output.canonical,  # MolT5 sends an empty output to FCD as "[]": unparsable
    )


def score_rows(
    references: Sequence[str],
    outputs: Sequence[str],
    reference_records: Sequence[MolRecord | None],
    output_records: Sequence[MolRecord | None] | None = None,
) -> tuple[list[RowScore], list[MolRecord]]:
    """Score rows; ``reference_records[i]`` / ``output_records[i]`` may be None (then computed). A string met
    again in these rows (an output equal to a reference, a repeated output) is not parsed again: its record
    is a function of the string. Returns (row scores, reference records)."""
    _quiet_rdkit()
    if output_records is None:
        output_records = [None] * len(outputs)
    seen: dict[str, MolRecord] = {}
    scores: list[RowScore] = []
    records: list[MolRecord] = []
    for ref, out, rec, out_rec in zip(references, outputs, reference_records, output_records):
        if rec is None:
            rec = seen.get(ref)
            if rec is None:
                rec = molecule_record(ref)
        seen[ref] = rec
        if out_rec is None:
            out_rec = seen.get(out)
            if out_rec is None:
                out_rec = molecule_record(out)
        seen[out] = out_rec
        scores.append(row_score(rec, out_rec, out == ""))
        records.append(rec)
    return scores, records
