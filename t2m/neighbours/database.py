"""Nearest training pairs of an input, written into the model's input (retrieval-augmented translation).

A checkpoint trained with neighbours reads, after the task prompt and the input itself, the ``k`` nearest
pairs of a database (its "memory"): for mol2text the nearest molecules' SMILES and captions, for text2mol
the nearest descriptions and their SMILES, each with its similarity::

    Caption the following SMILES: CCO || 0.62 CCCO => The molecule is a propan-1-ol ...

The model copies what fits from the neighbour's side of the target and changes what differs (Neural Fuzzy
Repair, Bulte & Tezcan 2019; Xu et al. 2020). Neighbours are found as the retrieval baselines find them
(:mod:`t2m.neighbours.baselines`): Morgan-fingerprint Tanimoto between molecules, TF-IDF cosine between descriptions.

In training, a pair never sees itself or another pair of the same molecule (same RDKit canonical SMILES),
so that training and test neighbours are alike in distance.

:class:`NeighbourFormat` is what a checkpoint's ``t2m.json`` says under ``"neighbours"``;
:class:`NeighbourDatabase` searches a list of (SMILES, description) records; :func:`conditioned_source`
writes the input text.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from t2m.chem import canonical_smiles
from t2m.data import read_records
from t2m.io import atomic_write_text
from t2m.neighbours.ranker import load_rankers
from t2m.neighbours.similarity import MoleculeSimilarity, TextSimilarity
from t2m.tasks import MOL2TEXT, TEXT2MOL, add_prompt, check_task, strip_prompt

SEPARATOR = " || "
ARROW = " => "
# a neighbour's source side is cut to this many characters: the input and the neighbour's target matter more
MAX_NEIGHBOUR_SOURCE_CHARS = {MOL2TEXT: 200, TEXT2MOL: 400}


@dataclass(frozen=True)
class Neighbour:
    """One database pair shown beside an input."""

    row: int
    similarity: float
    source: str  # the neighbour's side in the input's language (SMILES for mol2text)
    target: str  # the neighbour's side in the output's language (its caption for mol2text)


@dataclass(frozen=True)
class NeighbourFormat:
    """How a checkpoint's inputs carry neighbours (``t2m.json`` → ``"neighbours"``).

    ``k`` pairs after the input, best first; ``show_similarity`` writes each one's similarity (2 decimals)
    before it; ``database`` is the TSV of pairs searched (ChEBI-20 format), relative to the checkpoint
    folder unless absolute; ``ranker`` (optional, same rule) the JSON of :mod:`t2m.neighbours.ranker`
    rankers that order each input's nearest pairs before the first ``k`` are taken; ``memory`` (optional)
    records where the database came from (``source``, ``rows``, ``sha256`` and ``git_blob`` of the file), as
    ``t2m ship --memory`` writes it.
    """

    k: int = 1
    show_similarity: bool = True
    database: str = "memory.tsv"
    ranker: str | None = None
    memory: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"neighbours k = {self.k!r}: must be an integer >= 1")

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> "NeighbourFormat | None":
        """The format of a ``t2m.json`` dict, or None when its checkpoint reads no neighbours."""
        section = (meta or {}).get("neighbours")
        if not section:
            return None
        unknown = set(section) - {"k", "show_similarity", "database", "ranker", "memory"}
        if unknown:
            raise ValueError(f't2m.json "neighbours": unknown key(s) {", ".join(sorted(unknown))}; '
                             "known: k, show_similarity, database, ranker, memory")
        return cls(**section)

    def to_meta(self) -> dict[str, Any]:
        meta = asdict(self)
        for optional in ("ranker", "memory"):
            if meta[optional] is None:
                del meta[optional]
        return meta

    def database_path(self, checkpoint: str | Path) -> Path:
        path = Path(self.database)
        return path if path.is_absolute() else Path(checkpoint) / path

    def ranker_path(self, checkpoint: str | Path) -> Path | None:
        if not self.ranker:
            return None
        path = Path(self.ranker)
        return path if path.is_absolute() else Path(checkpoint) / path


def conditioned_source(text: str, task: str, neighbours: Sequence[Neighbour], show_similarity: bool = True) -> str:
    """``text`` followed by its neighbours, in the layout the model was trained on (no task prompt: the
    prompt goes in front of all of it, see :func:`t2m.tasks.add_prompt`)."""
    check_task(task)
    parts = [text]
    limit = MAX_NEIGHBOUR_SOURCE_CHARS[task]
    for n in neighbours:
        head = f"{n.similarity:.2f} " if show_similarity else ""
        parts.append(f"{head}{n.source[:limit]}{ARROW}{n.target}")
    return SEPARATOR.join(parts)


@dataclass
class NeighbourDatabase:
    """(SMILES, description) pairs searched for neighbours: by molecule (mol2text) or by description
    (text2mol). The search structures are built on first use of each task. ``rankers`` (by task, see
    :meth:`use_rankers`) reorder each query's nearest pairs outside training."""

    smiles: list[str]
    descriptions: list[str]
    name: str = ""
    rankers: dict[str, Any] = field(default_factory=dict, repr=False)
    _retrievers: dict[str, Any] = field(default_factory=dict, repr=False)
    _keys: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.smiles) != len(self.descriptions) or not self.smiles:
            raise ValueError(f"a neighbour database needs one description per SMILES and at least one pair "
                             f"(got {len(self.smiles)} SMILES, {len(self.descriptions)} descriptions)")

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, str]], name: str = "") -> "NeighbourDatabase":
        return cls([r["smiles"] for r in records], [r["description"] for r in records], name)

    @classmethod
    def from_file(cls, path: str | Path) -> "NeighbourDatabase":
        """A ChEBI-20-format TSV (``CID``, ``SMILES``, ``description``) or JSONL of pairs."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: neighbour database not found; pass a ChEBI-20-format TSV of "
                                    "training pairs (database=FILE)")
        return cls.from_records(read_records(path), str(path))

    def __len__(self) -> int:
        return len(self.smiles)

    def digest(self) -> str:
        """sha256 of the pairs in order (SMILES, tab, description, newline each): what a ranker or a cache
        fitted on this database records, whatever file or format the pairs came from."""
        return pairs_digest(self.smiles, self.descriptions)

    def use_rankers(self, rankers: Mapping[str, Any]) -> "NeighbourDatabase":
        """Order each query's nearest pairs by these :class:`t2m.neighbours.ranker.NeighbourRanker` (by task)
        before the first ``k`` are returned; training searches (``exclude_same_molecule_as``) stay by
        similarity."""
        self.rankers = {task: ranker.bind(self) for task, ranker in rankers.items()}
        return self

    def _retriever(self, task: str):
        if task not in self._retrievers:
            self._retrievers[task] = (MoleculeSimilarity(self.smiles, self.descriptions) if task == MOL2TEXT
                                      else TextSimilarity(self.descriptions, self.smiles))
        return self._retrievers[task]

    def prepare(self, tasks: Sequence[str] = (MOL2TEXT, TEXT2MOL)) -> None:
        """Build the search structures of ``tasks`` now (fingerprints, TF-IDF, the rankers' text features), not
        on the first search."""
        for task in tasks:
            self._retriever(task)
            if task in self.rankers:
                self.rankers[task].prepare()

    def sides(self, row: int, task: str) -> tuple[str, str]:
        """(source, target) of database row ``row`` for ``task``."""
        return (self.smiles[row], self.descriptions[row]) if task == MOL2TEXT else (self.descriptions[row], self.smiles[row])

    def search(self, queries: Sequence[str], task: str, k: int, exclude_same_molecule_as: Sequence[str] | None = None,
               pool: int | None = None) -> list[list[Neighbour]]:
        """The ``k`` nearest pairs of each query, best first. ``exclude_same_molecule_as`` (one SMILES per
        query) drops every database pair of that molecule — in training, the pair itself and its
        duplicates. ``pool`` candidates are searched before dropping (default ``k + 8``). With a ranker for
        ``task`` (and no exclusion), its ``pool`` nearest are searched and the ``k`` it ranks first returned."""
        check_task(task)
        if not len(queries):
            return []
        ranker = self.rankers.get(task) if exclude_same_molecule_as is None else None
        if ranker is None:
            return self._nearest(queries, task, k, exclude_same_molecule_as, pool)
        found = self._nearest(queries, task, max(ranker.pool, k), None, pool)
        out = []
        for query, candidates in zip(queries, found):
            ranked = ranker.rank(query, candidates)
            # the input itself in the database (same molecule, or the same description) stays first
            exact = [c for c in ranked if self._same(query, c, task)]
            out.append((exact + [c for c in ranked if c not in exact])[:k])
        return out

    def _same(self, query: str, neighbour: Neighbour, task: str) -> bool:
        if task == MOL2TEXT:
            return neighbour.similarity >= 1.0 and canonical_smiles(query, default=query) == self.molecule_key(neighbour.row)
        return query.strip() == neighbour.source.strip()

    def _nearest(self, queries: Sequence[str], task: str, k: int, exclude_same_molecule_as: Sequence[str] | None,
                 pool: int | None) -> list[list[Neighbour]]:
        """:meth:`search` by similarity alone."""
        pool = max(pool or k + 8, k)
        found = self._retriever(task).search(list(queries), pool if exclude_same_molecule_as is not None else k)
        if exclude_same_molecule_as is not None:
            keys = self.molecule_keys()
            excluded = [canonical_smiles(s, default=s) for s in exclude_same_molecule_as]
        out = []
        for i, (rows, scores) in enumerate(found):
            chosen = []
            for row, score in zip(rows.tolist(), scores.tolist()):
                if exclude_same_molecule_as is not None and keys[row] == excluded[i]:
                    continue
                source, target = self.sides(row, task)
                chosen.append(Neighbour(int(row), round(float(score), 4), source, target))
                if len(chosen) == k:
                    break
            out.append(chosen)
        return out

    def molecule_key(self, row: int) -> str:
        """Row ``row``'s molecule as :func:`t2m.chem.canonical_smiles` with ``default`` its own SMILES (without
        computing every row's): two rows with the same key are the same molecule."""
        return self._keys[row] if self._keys is not None else canonical_smiles(self.smiles[row], default=self.smiles[row])

    def molecule_keys(self) -> list[str]:
        if self._keys is None:
            self._keys = [canonical_smiles(s, default=s) for s in self.smiles]
        return self._keys


def pairs_digest(smiles: Sequence[str], descriptions: Sequence[str]) -> str:
    """sha256 of (SMILES, description) pairs in order, one ``SMILES\tdescription\n`` line each."""
    import hashlib

    digest = hashlib.sha256()
    for smi, text in zip(smiles, descriptions):
        digest.update(f"{smi}\t{text}\n".encode("utf-8"))
    return digest.hexdigest()


def training_neighbours(database: NeighbourDatabase, records: Sequence[Mapping[str, str]], task: str,
                        pool: int) -> list[list[Neighbour]]:
    """For each training record, its ``pool`` nearest pairs of ``database`` that are not the same molecule."""
    queries = [r["smiles"] if task == MOL2TEXT else r["description"] for r in records]
    return database.search(queries, task, pool, exclude_same_molecule_as=[r["smiles"] for r in records],
                           pool=pool + 8)


def draw_neighbours(candidates: Sequence[Neighbour], k: int, rng: random.Random, p_nearest: float = 0.5) -> list[Neighbour]:
    """``k`` of a training pair's candidates for one epoch: the nearest ``k`` with probability ``p_nearest``,
    else ``k`` drawn from the candidates (kept in order of similarity). A different draw each epoch
    multiplies the distinct examples a small training set gives."""
    if len(candidates) <= k or rng.random() < p_nearest:
        return list(candidates[:k])
    picked = sorted(rng.sample(range(len(candidates)), k))
    return [candidates[i] for i in picked]


# n-grams whose share of an output found in its neighbours' targets measures copying: word 4-grams of a
# caption, character 8-grams of a SMILES (about two atoms with their bonds and branches)
COPY_NGRAMS = {MOL2TEXT: ("words", 4), TEXT2MOL: ("chars", 8)}


def _ngrams(text: str, task: str) -> list[tuple]:
    unit, n = COPY_NGRAMS[task]
    items = text.split() if unit == "words" else list(text)
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


def copied_share(outputs: Sequence[str], neighbours: Sequence[Sequence[Neighbour]], task: str) -> float:
    """The share of the outputs' n-grams (:data:`COPY_NGRAMS`) found in the targets of the neighbours each
    output's input showed, over all outputs: how much of what a model writes it copied from its neighbours.
    Outputs shorter than one n-gram count nothing; nan when no output has one."""
    check_task(task)
    found = total = 0
    for output, shown in zip(outputs, neighbours, strict=True):
        grams = _ngrams(output, task)
        if not grams:
            continue
        known = {g for n in shown for g in _ngrams(n.target, task)}
        found += sum(g in known for g in grams)
        total += len(grams)
    return found / total if total else float("nan")


def save_neighbour_cache(path: Path, found: Mapping[str, list[list[Neighbour]]]) -> None:
    atomic_write_text(path, json.dumps({task: [[asdict(n) for n in row] for row in rows] for task, rows in found.items()}))


def load_neighbour_cache(path: Path) -> dict[str, list[list[Neighbour]]]:
    raw = json.loads(Path(path).read_text())
    return {task: [[Neighbour(**n) for n in row] for row in rows] for task, rows in raw.items()}


def model_inputs(texts: Sequence[str], task: str, prompt_style: str = "textchem",
                 neighbour_format: NeighbourFormat | None = None, database: NeighbourDatabase | None = None,
                 neighbours: Sequence[Sequence[Neighbour]] | None = None,
                 exclude_same_molecule_as: Sequence[str] | None = None) -> list[str]:
    """The text a checkpoint reads for each input: its task prompt, the input and, when it was trained with
    neighbours (``neighbour_format``), the input's neighbours in ``database`` (found here unless given;
    ``exclude_same_molecule_as`` as in :meth:`NeighbourDatabase.search`, for training pairs)."""
    texts = [strip_prompt(t, task) for t in texts]
    if neighbour_format is not None:
        if neighbours is None:
            neighbours = database.search(texts, task, neighbour_format.k, exclude_same_molecule_as=exclude_same_molecule_as)
        texts = [conditioned_source(t, task, n, neighbour_format.show_similarity) for t, n in zip(texts, neighbours)]
    return [add_prompt(t, task, prompt_style) for t in texts]


def load_checkpoint_database(checkpoint: str | Path, neighbour_format: NeighbourFormat | None,
                             database: "NeighbourDatabase | str | Path | None" = None) -> "NeighbourDatabase | None":
    """The neighbour database a checkpoint reads: ``database`` when given (a loaded one, used as it is, or a
    file), else the file its ``t2m.json`` names, with the checkpoint's neighbour rankers when it names
    them; None for a checkpoint that reads no neighbours."""
    if neighbour_format is None:
        return None
    if not isinstance(database, NeighbourDatabase):
        database = NeighbourDatabase.from_file(database or neighbour_format.database_path(checkpoint))
        ranker_file = neighbour_format.ranker_path(checkpoint)
        if ranker_file is not None:
            database.use_rankers(load_rankers(ranker_file))
    return database

