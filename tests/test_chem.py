"""t2m.chem: the one place t2m parses, canonicalises, fingerprints and draws SMILES -- each function's failure
result, and RDKit kept quiet per call without changing its logging for the process."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from t2m import chem

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["", "C1CC", "not a molecule"])
def test_failure_results(bad):
    assert chem.molecule(bad) is None
    assert chem.is_valid_smiles(bad) is False
    assert chem.canonical_smiles(bad) is None
    assert chem.canonical_smiles(bad, default=bad) == bad  # the neighbour database's same-molecule key
    assert chem.morgan_fingerprint(bad) is None and chem.morgan_fingerprints([bad, "CCO"])[0] is None
    assert chem.ranker_fingerprints(bad) is None
    assert chem.molecule_svg(bad) is None


def test_valid_smiles():
    assert chem.canonical_smiles("OCC") == chem.canonical_smiles("OCC", default="x") == "CCO"
    assert chem.is_valid_smiles("CCO") and not chem.is_valid_smiles("   ")
    assert chem.morgan_fingerprint("OCC") == chem.morgan_fingerprint("CCO")
    morgan, maccs, rdkit_fp, heavy = chem.ranker_fingerprints("c1ccccc1O")
    assert morgan == chem.morgan_fingerprint("Oc1ccccc1") and heavy == 7 and maccs.GetNumOnBits() and rdkit_fp.GetNumOnBits()


def test_randomized_smiles_is_the_same_molecule_and_keeps_what_rdkit_cannot_read():
    rng = random.Random(0)
    out = [chem.randomized_smiles("c1ccccc1CCO", rng) for _ in range(5)]
    assert {chem.canonical_smiles(s) for s in out} == {chem.canonical_smiles("c1ccccc1CCO")}
    assert chem.randomized_smiles("C1CC", rng) == "C1CC"
    state = rng.getstate()
    chem.randomized_smiles("", rng)  # an empty SMILES draws from the stream, as training always has
    assert rng.getstate() != state


def test_rdkit_is_quiet_per_call_and_its_process_logging_unchanged():
    code = ("import sys\nfrom t2m import chem\nfrom rdkit import Chem\n"
            "chem.molecule('C1CC'); chem.canonical_smiles('C1CC'); chem.is_valid_smiles('C1CC'); "
            "chem.morgan_fingerprints(['C1CC']); chem.molecule_svg('C1CC')\n"
            "sys.stderr.write('--after--\\n'); sys.stderr.flush()\nChem.MolFromSmiles('C1CC')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    before, _, after = run.stderr.partition("--after--")
    assert before.strip() == "", f"t2m.chem let RDKit print: {before!r}"
    assert "C1CC" in after, "t2m.chem must not silence RDKit for the whole process"


def test_only_chem_parses_smiles_in_t2m():
    """RDKit's parser and its process-wide log switches appear in t2m/ only in t2m/chem.py (evaluation/
    keeps its own: it does not import t2m)."""
    bad = []
    for path in sorted((ROOT / "t2m").rglob("*.py")):
        if path.name == "chem.py" and path.parent.name == "t2m":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                    else node.name.rpartition(".")[2] if isinstance(node, ast.alias) else "")
            if name in ("MolFromSmiles", "RDLogger", "BlockLogs", "DisableLog"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, "parse SMILES and silence RDKit through t2m.chem:\n" + "\n".join(bad)
