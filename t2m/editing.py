"""How an output edits the neighbour it was shown: what it copies, what it changes, and whether it changes
what the truth changes.

A model that reads its nearest training pair can do better than retrieval only by keeping what the true
target shares with the neighbour's target and changing what differs ("conjugate base" -> "conjugate acid",
``[O-]`` -> ``O``). For one row, the neighbour's target, the reference and the output are cut into tokens
(words of a caption; atoms, bonds and ring marks of a SMILES) and each is aligned to the neighbour's target
(:class:`difflib.SequenceMatcher`); a neighbour token is *changed* by a text when it is not in a matching
block. Over the rows whose reference differs from the neighbour's target:

- ``changed_where_gold_changed``: of the neighbour tokens the reference changes, the share the output
  changes too (does it edit where it should?);
- ``kept_where_gold_kept``: of the neighbour tokens the reference keeps, the share the output keeps (does
  it leave the rest alone?);
- ``identical_to_neighbour``: the share of outputs that are the neighbour's target itself (pure copies).

:func:`similarity_bands` groups rows by how near the neighbour's molecule is to the row's molecule (Morgan
Tanimoto: >= 0.999, 0.9-0.999, < 0.9), where editing is easy, plausible and hard.
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

import numpy as np

from t2m.chem import morgan_fingerprints
from t2m.tasks import TEXT2MOL

# the SMILES tokens of Schwaller et al. (Molecular Transformer): bracket atoms, two-letter organic atoms,
# atoms, bonds, branches, ring-closure digits and %nn
SMILES_TOKEN = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")
BANDS = (("≥0.999", 0.999, 2.0), ("0.9–0.999", 0.9, 0.999), ("<0.9", -1.0, 0.9))


def tokens(text: str, task: str) -> list[str]:
    """Words of a caption (mol2text), SMILES tokens of a molecule (text2mol)."""
    return SMILES_TOKEN.findall(text) if task == TEXT2MOL else text.split()


def changed_positions(neighbour: Sequence[str], text: Sequence[str]) -> set[int]:
    """Positions of ``neighbour``'s tokens that ``text`` does not keep (outside the matching blocks)."""
    kept: set[int] = set()
    for block in difflib.SequenceMatcher(None, neighbour, text, autojunk=False).get_matching_blocks():
        kept.update(range(block.a, block.a + block.size))
    return set(range(len(neighbour))) - kept


def edit_agreement(outputs: Sequence[str], references: Sequence[str], neighbour_targets: Sequence[str],
                   task: str) -> dict[str, float | int]:
    """The module docstring's measures over the rows whose reference is not the neighbour's target (``rows``:
    how many); NaN where a measure has nothing to count."""
    changed_hit = changed_total = kept_hit = kept_total = identical = rows = 0
    for output, reference, neighbour in zip(outputs, references, neighbour_targets):
        if reference.strip() == neighbour.strip():
            continue
        rows += 1
        identical += output.strip() == neighbour.strip()
        base = tokens(neighbour, task)
        gold = changed_positions(base, tokens(reference, task))
        ours = changed_positions(base, tokens(output, task))
        changed_hit += len(gold & ours)
        changed_total += len(gold)
        kept = set(range(len(base))) - gold
        kept_hit += len(kept - ours)
        kept_total += len(kept)

    def share(hit: int, total: int) -> float:
        return round(hit / total, 4) if total else float("nan")

    return {"rows": rows, "identical_to_neighbour": share(identical, rows),
            "changed_where_gold_changed": share(changed_hit, changed_total),
            "kept_where_gold_kept": share(kept_hit, kept_total)}


def molecule_similarities(molecules: Sequence[str], neighbour_molecules: Sequence[str]) -> np.ndarray:
    """Morgan (radius 2, 2,048 bits) Tanimoto of each molecule to its neighbour's; 0 where either does not
    parse."""
    from rdkit import DataStructs

    ours, theirs = morgan_fingerprints(molecules), morgan_fingerprints(neighbour_molecules)
    return np.array([DataStructs.TanimotoSimilarity(a, b) if a is not None and b is not None else 0.0
                     for a, b in zip(ours, theirs)])


def similarity_bands(similarities: np.ndarray) -> dict[str, np.ndarray]:
    """{band name: boolean mask of the rows in it} for :data:`BANDS`."""
    similarities = np.asarray(similarities)
    return {name: (similarities >= low) & (similarities < high) for name, low, high in BANDS}
