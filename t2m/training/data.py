"""What a training run reads: the pairs, the dev slice, unlabeled molecules, each pair's neighbours, and
tagged back-translations; and the examples of one epoch (:func:`epoch_examples`). :mod:`t2m.training.trainer` trains
on them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from t2m.chem import canonical_smiles, randomized_smiles
from t2m.io import atomic_write_text, file_sha256
from t2m.neighbours.database import (
    Neighbour,
    NeighbourDatabase,
    conditioned_source,
    draw_neighbours,
    load_neighbour_cache,
    pairs_digest,
    save_neighbour_cache,
    training_neighbours,
)
from t2m.data import ColumnNames, load_chebi20_records, load_chebi20_unlabeled_records, read_records
from t2m.tasks import MOL2TEXT, PROMPTS, TEXT2MOL
from t2m.training.config import TrainConfig

SMILES2SMILES = "smiles2smiles"
AUX_PROMPT = "Write the SMILES of the molecule: "
# tagged back-translation (Caswell et al., 2019): the text2mol source of a synthetic pair starts with this tag,
# so the model can tell machine-written descriptions from real ones (real inputs never carry it)
SYNTHETIC_TAG = "[synthetic] "


@dataclass
class TrainingData:
    train: list[dict]
    dev: list[dict]
    unlabeled_smiles: list[str] = field(default_factory=list)
    setting: str = ""
    # with config.neighbours: task -> per train row its candidate neighbours; per dev row its nearest ones
    train_neighbours: dict[str, list] = field(default_factory=dict)
    dev_neighbours: dict[str, list] = field(default_factory=dict)
    described: dict = field(default_factory=dict)  # t2m.data.Chebi20Splits.describe()
    synthetic: list[dict] = field(default_factory=list)  # back-translated pairs (config.back_translations)
    synthetic_neighbours: list = field(default_factory=list)  # with config.neighbours: per synthetic pair

    def source(self, row: int, task: str, neighbours=None, split: str = "train", show_similarity: bool = True) -> str:
        """The prompted model input of row ``row`` of ``split`` for ``task``, with ``neighbours`` (default:
        the row's nearest ones) when the data has neighbours."""
        record = (self.train if split == "train" else self.dev)[row]
        text = record["description"] if task == TEXT2MOL else record["smiles"]
        found = self.train_neighbours if split == "train" else self.dev_neighbours
        if found:
            if neighbours is None:
                neighbours = found[task][row]
            text = conditioned_source(text, task, neighbours, show_similarity)
        return PROMPTS[task] + text


def load_training_data(config: TrainConfig, cache_dir: Path | None = None) -> TrainingData:
    splits = load_chebi20_records(config.data_dir, config.setting, dev_size=config.dev_size)
    unlabeled: list[str] = []
    if config.aux_unlabeled_per_epoch or (config.tokenizer is None and config.tokenizer_uses_unlabeled):
        try:
            unlabeled = [r["smiles"] for r in load_chebi20_unlabeled_records(config.data_dir)]
        except FileNotFoundError:
            unlabeled = []
    data = TrainingData(splits.train, splits.dev, unlabeled, splits.setting, described=splits.describe())
    if config.back_translations:
        data.synthetic = load_back_translations(config.back_translations, data)
        data.described["back_translations"] = {"file": str(config.back_translations), "pairs": len(data.synthetic),
                                               "sha256": file_sha256(config.back_translations)}
    if config.neighbours:
        data.train_neighbours, data.dev_neighbours = find_training_neighbours(config, data, cache_dir)
        if data.synthetic:
            data.synthetic_neighbours = find_synthetic_neighbours(config, data, cache_dir)
    return data


def load_back_translations(path: str | Path, data: TrainingData) -> list[dict]:
    """The synthetic pairs of ``path``, less those of a molecule among the training or dev pairs and those
    with an empty description. ``path`` is what ``t2m translate --task mol2text --output FILE.tsv`` writes
    (MolT5's columns ``SMILES``, ``ground truth``, ``output``: the output is the description), or a ChEBI-20
    TSV or JSONL of SMILES and descriptions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: back-translation file not found (training option back_translations: "
                                "the TSV `t2m translate --task mol2text` writes, or a ChEBI-20 TSV / JSONL)")
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    translated = header[:3] == ["SMILES", "ground truth", "output"]
    columns = ColumnNames(cid=None, smiles="SMILES", description="output") if translated else None
    known = {canonical_smiles(r["smiles"], default=r["smiles"]) for r in (*data.train, *data.dev)}
    kept = [r for r in read_records(path, columns)
            if r["description"].strip() and canonical_smiles(r["smiles"], default=r["smiles"]) not in known]
    if not kept:
        raise ValueError(f"{path}: no back-translated pair left (every molecule is a training or dev one, or "
                         "every description is empty)")
    return kept


def find_synthetic_neighbours(config: TrainConfig, data: TrainingData, cache_dir: Path | None) -> list:
    """Each synthetic pair's ``neighbour_pool`` nearest training pairs by its description (never its own
    molecule), as real text2mol training rows get theirs; cached in ``cache_dir/synthetic_neighbours.json``
    under the back-translation file's hash (another file, even of as many pairs, is searched anew)."""
    key = f"{TEXT2MOL}-{data.described.get('back_translations', {}).get('sha256', '')}"
    cache = cache_dir / "synthetic_neighbours.json" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        found = load_neighbour_cache(cache).get(key, [])
        if len(found) == len(data.synthetic):
            return found
    # a description copied from a training pair (a retrieval caption) must not see that pair: drop neighbours
    # whose description is the synthetic one, as a training pair never sees itself
    found = training_neighbours(NeighbourDatabase.from_records(data.train), data.synthetic, TEXT2MOL,
                                config.neighbour_pool + 2)
    found = [[n for n in row if n.source.strip() != pair["description"].strip()][:config.neighbour_pool]
             for pair, row in zip(data.synthetic, found)]
    if cache is not None:
        save_neighbour_cache(cache, {key: found})
    return found


NEIGHBOUR_CACHE = "neighbours.json"


def find_training_neighbours(config: TrainConfig, data: TrainingData, cache_dir: Path | None):
    """Per task, each training row's ``neighbour_pool`` nearest other-molecule pairs, and each dev row's
    ``neighbours`` nearest pairs (as at test time). Cached in ``cache_dir/neighbours.json`` under the digests
    of the training and dev pairs and the counts, as (row, similarity) only: a run resumed, or another run
    over the same pairs, reads it instead of searching again; different pairs or counts search anew."""
    database = NeighbourDatabase.from_records(data.train)
    key = {"format": 2, "train": database.digest(), "pool": config.neighbour_pool, "k": config.neighbours,
           "dev": pairs_digest([r["smiles"] for r in data.dev], [r["description"] for r in data.dev])}
    cache = cache_dir / NEIGHBOUR_CACHE if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            found = json.loads(cache.read_text())
        except ValueError:
            found = {}
        if found.get("key") == key:
            def rebuild(rows, task):
                return [[Neighbour(r, s, *database.sides(r, task)) for r, s in row] for row in rows]

            return ({t: rebuild(found["train-" + t], t) for t in (TEXT2MOL, MOL2TEXT)},
                    {t: rebuild(found["dev-" + t], t) for t in (TEXT2MOL, MOL2TEXT)})
    train, dev = {}, {}
    for task in (TEXT2MOL, MOL2TEXT):
        train[task] = training_neighbours(database, data.train, task, config.neighbour_pool)
        queries = [r["description"] if task == TEXT2MOL else r["smiles"] for r in data.dev]
        dev[task] = database.search(queries, task, config.neighbours)
    if cache is not None:
        compact = {f"{split}-{task}": [[[n.row, n.similarity] for n in row] for row in found[task]]
                   for split, found in (("train", train), ("dev", dev)) for task in found}
        atomic_write_text(cache, json.dumps({"key": key, **compact}))
    return train, dev


def epoch_examples(data: TrainingData, config: TrainConfig, epoch: int) -> list[tuple[str, str, str]]:
    """(prompted source, target, task) for one epoch: every pair in both directions, plus aux rows."""
    rng = random.Random(config.seed * 100003 + epoch)
    examples = []
    for i, row in enumerate(data.train):
        smiles, description = row["smiles"], row["description"]
        source = randomized_smiles(smiles, rng) if rng.random() < config.smiles_augment else smiles
        sources = {TEXT2MOL: description, MOL2TEXT: source}
        if data.train_neighbours:
            for task in (TEXT2MOL, MOL2TEXT):
                shown = draw_neighbours(data.train_neighbours[task][i], config.neighbours, rng, config.neighbour_p_nearest)
                sources[task] = conditioned_source(sources[task], task, shown, config.show_similarity)
        examples.append((PROMPTS[TEXT2MOL] + sources[TEXT2MOL], smiles, TEXT2MOL))
        examples.append((PROMPTS[MOL2TEXT] + sources[MOL2TEXT], description, MOL2TEXT))
    if data.synthetic:
        rows = range(len(data.synthetic))
        if config.back_translations_per_epoch:
            rows = sorted(rng.sample(rows, min(config.back_translations_per_epoch, len(data.synthetic))))
        for i in rows:
            description = data.synthetic[i]["description"]
            if data.synthetic_neighbours:
                shown = draw_neighbours(data.synthetic_neighbours[i], config.neighbours, rng, config.neighbour_p_nearest)
                description = conditioned_source(description, TEXT2MOL, shown, config.show_similarity)
            examples.append((PROMPTS[TEXT2MOL] + SYNTHETIC_TAG + description, data.synthetic[i]["smiles"], TEXT2MOL))
    if config.aux_unlabeled_per_epoch and data.unlabeled_smiles:
        for smiles in rng.sample(data.unlabeled_smiles, min(config.aux_unlabeled_per_epoch, len(data.unlabeled_smiles))):
            examples.append((AUX_PROMPT + randomized_smiles(smiles, rng), smiles, SMILES2SMILES))
    return examples
