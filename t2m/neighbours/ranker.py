"""A learned choice among an input's nearest database pairs: which neighbour's target is closest to the truth.

The nearest pair by one similarity (Morgan Tanimoto between molecules, TF-IDF cosine between descriptions) is
a strong answer on its own; among the ``pool`` nearest, though, another pair's target is often closer to the
input's true target. :class:`NeighbourRanker` scores each candidate from features of the input, the
candidate and the other candidates -- its similarities under several fingerprints or text representations,
its rank and distance behind the nearest, and how much its target agrees with the other candidates'
(consensus, Devlin et al. 2015) -- with gradient-boosted regression trees (scikit-learn's
``HistGradientBoostingRegressor``) fitted on the database itself: every pair is a query, its ``pool``
nearest other pairs (never the same molecule) the candidates, and the label how much closer each
candidate's target is to the pair's own target than the nearest candidate's (sentence BLEU for captions,
Morgan Tanimoto for molecules). Fitting takes about a minute on 4,791 pairs; the trees are written as plain
JSON (:func:`save_rankers`) and evaluated with numpy, so loading a ranker needs neither scikit-learn nor
pickle. Boosted trees were chosen over a ridge regression on the same features by 5-fold cross-validation
over the 4,791 benchmark training pairs (mol2text BLEU-4 of the chosen captions 0.3782 vs 0.3700; the
nearest pair's 0.3672).

Features, mol2text (query: SMILES; candidates: database molecules and their captions):

- Morgan Tanimoto, rank, Morgan gap to the nearest; MACCS and RDKit-fingerprint Tanimoto to the query;
  heavy-atom count difference; caption length in words; consensus: the candidate caption's word-bigram
  Jaccard with the other candidates' captions, similarity-weighted mean and maximum.

text2mol (query: description; candidates: database descriptions and their SMILES):

- TF-IDF word cosine, rank, cosine gap; character 3-5-gram TF-IDF cosine (fitted on the database's
  descriptions) and its gap; consensus: the candidate molecule's Morgan Tanimoto with the other candidates'
  molecules (weighted mean and maximum) and MACCS (weighted mean); heavy atoms; whether RDKit parses it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from t2m.chem import ranker_fingerprints
from t2m.io import atomic_write_text
from t2m.tasks import MOL2TEXT, TEXT2MOL, check_task

# (t2m.neighbours.database imports this module: its types, Neighbour and NeighbourDatabase, are named here in strings only)
POOL = 8  # candidates ranked per input
# the boosted trees (chosen by 5-fold cross-validation on the benchmark training pairs)
TREES = dict(learning_rate=0.05, max_iter=200, max_leaf_nodes=15, min_samples_leaf=40, random_state=0)
FEATURES = {
    MOL2TEXT: ["morgan", "rank", "morgan_gap", "maccs", "rdkit_fp", "heavy_atom_diff", "caption_words",
               "consensus_mean", "consensus_max"],
    TEXT2MOL: ["tfidf", "rank", "tfidf_gap", "char_tfidf", "char_tfidf_gap", "consensus_morgan_mean",
               "consensus_morgan_max", "consensus_maccs_mean", "heavy_atoms", "unparsable"],
}
FORMAT_VERSION = 1


class _Molecules:
    """:func:`t2m.chem.ranker_fingerprints` of SMILES (Morgan, MACCS, RDKit, heavy atoms). Database molecules
    (the candidates, a bounded set) are computed once and kept; inputs (``keep=False``) are not kept."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, smiles: str, keep: bool = True):
        if smiles in self._cache:
            return self._cache[smiles]
        found = ranker_fingerprints(smiles)
        if keep:
            self._cache[smiles] = found
        return found


def _tanimoto(a, b, which: int) -> float:
    from rdkit import DataStructs

    if a is None or b is None:
        return 0.0
    return float(DataStructs.TanimotoSimilarity(a[which], b[which]))


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = text.split()
    return set(zip(words, words[1:]))


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def _weighted(values: Sequence[float], weights: Sequence[float]) -> float:
    total = float(sum(weights))
    return float(np.dot(values, weights) / total) if values and total > 0 else 0.0


@dataclass
class FeatureMaker:
    """Features of (query, candidates) for one task; ``descriptions``: the database's descriptions (text2mol:
    the character TF-IDF is fitted on them)."""

    task: str
    descriptions: Sequence[str] = ()
    molecules: _Molecules = field(default_factory=_Molecules)
    _char: Any = None

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.task == TEXT2MOL:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                         min_df=2 if len(self.descriptions) > 50 else 1)
            self._char.fit(list(self.descriptions) or ["a"])

    def __call__(self, query: str, candidates: Sequence["Neighbour"]) -> np.ndarray:
        """(len(candidates), len(FEATURES[task])) floats; candidates best first by their own similarity."""
        if not candidates:
            return np.zeros((0, len(FEATURES[self.task])))
        sims = [c.similarity for c in candidates]
        others = [[j for j in range(len(candidates)) if j != i] for i in range(len(candidates))]
        rows = []
        if self.task == MOL2TEXT:
            q = self.molecules(query, keep=False)
            mols = [self.molecules(c.source) for c in candidates]
            grams = [_bigrams(c.target) for c in candidates]
            for i, c in enumerate(candidates):
                agree = [_jaccard(grams[i], grams[j]) for j in others[i]]
                weights = [sims[j] for j in others[i]]
                atoms = abs((q[3] if q else 0) - (mols[i][3] if mols[i] else 0))
                rows.append([sims[i], i, sims[0] - sims[i], _tanimoto(q, mols[i], 1), _tanimoto(q, mols[i], 2),
                             atoms, len(c.target.split()), _weighted(agree, weights), max(agree, default=0.0)])
        else:
            vectors = self._char.transform([query] + [c.source for c in candidates])
            char = (vectors[1:] @ vectors[0].T).toarray().ravel()
            mols = [self.molecules(c.target) for c in candidates]
            for i in range(len(candidates)):
                morgan = [_tanimoto(mols[i], mols[j], 0) for j in others[i]]
                maccs = [_tanimoto(mols[i], mols[j], 1) for j in others[i]]
                weights = [sims[j] for j in others[i]]
                rows.append([sims[i], i, sims[0] - sims[i], char[i], char[0] - char[i], _weighted(morgan, weights),
                             max(morgan, default=0.0), _weighted(maccs, weights), mols[i][3] if mols[i] else 0,
                             float(mols[i] is None)])
        return np.asarray(rows, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _sentence_bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)


def closeness(task: str, target: str, truth: str, molecules: _Molecules | None = None) -> float:
    """How close a candidate's target is to the true target: sentence BLEU / 100 (sacrebleu, effective
    order) for captions, Morgan Tanimoto for SMILES (0 when either does not parse)."""
    if task == MOL2TEXT:
        return _sentence_bleu().sentence_score(target, [truth]).score / 100.0
    molecules = molecules or _Molecules()
    return _tanimoto(molecules(target), molecules(truth), 0)


@dataclass
class NeighbourRanker:
    """Scores of candidate neighbours for one task: ``baseline`` plus the leaf value each regression tree
    gives the candidate's features (``trees``: per tree, node arrays ``feature``, ``threshold``, ``left``,
    ``right``, ``leaf``, ``value``, ``missing_left``; a row goes left where its feature is <= the threshold)."""

    task: str
    baseline: float
    trees: list[dict[str, list]]
    pool: int = POOL
    fitted_on: dict[str, Any] = field(default_factory=dict)
    _features: FeatureMaker | None = field(default=None, repr=False)
    _descriptions: Sequence[str] | None = field(default=None, repr=False)
    _arrays: list[tuple[np.ndarray, ...]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_task(self.task)
        n = len(FEATURES[self.task])
        self._arrays = []
        for i, tree in enumerate(self.trees):
            arrays = tuple(np.asarray(tree[k]) for k in ("feature", "threshold", "left", "right", "leaf", "value",
                                                         "missing_left"))
            if arrays[0].max(initial=0) >= n or len({len(a) for a in arrays}) != 1:
                raise ValueError(f"{self.task} ranker: tree {i} is malformed (features 0..{n - 1}, equal node arrays)")
            self._arrays.append(arrays)

    def bind(self, database: "NeighbourDatabase") -> "NeighbourRanker":
        """Use ``database``'s descriptions for the text features (done by the database that holds it); they
        are fitted on the first :meth:`scores`, so a translation in the other direction does not pay for them."""
        self._features = None
        self._descriptions = database.descriptions
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The trees' score of each row of features ``x`` (rows, features)."""
        out = np.full(len(x), self.baseline, dtype=np.float64)
        rows = np.arange(len(x))
        for feature, threshold, left, right, leaf, value, missing_left in self._arrays:
            node = np.zeros(len(x), dtype=np.int64)
            active = ~leaf[node].astype(bool)
            while active.any():
                n = node[active]
                v = x[rows[active], feature[n]]
                go_left = np.where(np.isnan(v), missing_left[n].astype(bool), v <= threshold[n])
                node[active] = np.where(go_left, left[n], right[n])
                active = ~leaf[node].astype(bool)
            out += value[node]
        return out

    def prepare(self) -> "NeighbourRanker":
        """Fit the text features on the bound database's descriptions now (else on the first :meth:`scores`)."""
        if self._features is None:
            if self._descriptions is None:
                raise RuntimeError("NeighbourRanker.bind(database) first: its text features need the database")
            self._features = FeatureMaker(self.task, self._descriptions)
        return self

    def scores(self, query: str, candidates: Sequence["Neighbour"]) -> np.ndarray:
        return self.predict(self.prepare()._features(query, candidates))

    def rank(self, query: str, candidates: Sequence["Neighbour"]) -> list["Neighbour"]:
        """``candidates`` best first by score (ties keep the similarity order)."""
        if len(candidates) < 2:
            return list(candidates)
        order = np.argsort(-self.scores(query, candidates), kind="stable")
        return [candidates[int(i)] for i in order]

    # --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "features": FEATURES[self.task], "baseline": self.baseline, "trees": self.trees,
                "pool": self.pool, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "ranker") -> "NeighbourRanker":
        task = raw.get("task")
        if task not in FEATURES or raw.get("features") != FEATURES[task]:
            raise ValueError(f"{where}: a {task!r} ranker with features {raw.get('features')}; this t2m computes "
                             f"{FEATURES.get(task)}: refit it with `t2m ranker fit`")
        return cls(task, float(raw["baseline"]), list(raw["trees"]), int(raw.get("pool", POOL)),
                   dict(raw.get("fitted_on", {})))


def save_rankers(path: str | Path, rankers: dict[str, NeighbourRanker]) -> None:
    atomic_write_text(Path(path), json.dumps({"format": FORMAT_VERSION,
                                              "rankers": {t: r.to_dict() for t, r in rankers.items()}}) + "\n")


def load_rankers(path: str | Path) -> dict[str, NeighbourRanker]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: neighbour ranker file not found; fit one with `t2m ranker fit "
                                f"--database PAIRS.tsv --out {path.name}`")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: ranker format {raw.get('format')!r}, this t2m reads {FORMAT_VERSION}; refit it "
                         "with `t2m ranker fit`")
    return {task: NeighbourRanker.from_dict(r, f"{path}: {task}") for task, r in raw["rankers"].items()}


def fit_ranker(database: "NeighbourDatabase", task: str, pool: int = POOL, progress: bool = False) -> NeighbourRanker:
    """Fit a ranker on ``database`` itself: each pair a query, its ``pool`` nearest other pairs (never the
    same molecule) the candidates, the label each candidate's :func:`closeness` to the pair's own target
    minus the nearest candidate's."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from tqdm.auto import tqdm

    check_task(task)
    # as t2m.neighbours.database.training_neighbours finds them: never the pair itself nor another pair of its molecule
    queries = [database.sides(i, task)[0] for i in range(len(database))]
    found = database.search(queries, task, pool, exclude_same_molecule_as=database.smiles, pool=pool + 8)
    maker = FeatureMaker(task, database.descriptions)
    xs, ys = [], []
    for i, candidates in enumerate(tqdm(found, desc=f"ranker features {task}", disable=not progress)):
        if len(candidates) < 2:
            continue
        query, truth = database.sides(i, task)
        xs.append(maker(query, candidates))
        labels = np.array([closeness(task, c.target, truth, maker.molecules) for c in candidates])
        ys.append(labels - labels[0])
    if not xs:
        raise ValueError(f"a ranker needs a database of at least 3 distinct molecules (got {len(database)} pairs)")
    x, y = np.concatenate(xs), np.concatenate(ys)
    settings = dict(TREES, min_samples_leaf=min(TREES["min_samples_leaf"], max(2, len(x) // 20)))
    model = HistGradientBoostingRegressor(**settings).fit(x, y)
    ranker = NeighbourRanker(task, float(np.ravel(model._baseline_prediction)[0]), _export_trees(model), pool,
                             {"database": database.name, "pairs": len(database), "pairs_sha256": database.digest(),
                              "queries": len(xs),
                              "trees": {k: v for k, v in settings.items() if k != "random_state"}})
    if not np.allclose(ranker.predict(x), model.predict(x), atol=1e-9):  # the JSON trees are the fitted model
        raise RuntimeError("the exported trees do not reproduce scikit-learn's predictions; this scikit-learn's "
                           "tree layout is not the one t2m.neighbours.ranker reads")
    return ranker.bind(database)


def _export_trees(model: Any) -> list[dict[str, list]]:
    """The regression trees of a fitted ``HistGradientBoostingRegressor`` as plain lists."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                      "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                      "leaf": nodes["is_leaf"].astype(bool).tolist(), "value": nodes["value"].tolist(),
                      "missing_left": nodes["missing_go_to_left"].astype(bool).tolist()})
    return trees


def fitted_for(rankers: dict[str, NeighbourRanker], database: "NeighbourDatabase") -> str | None:
    """None when every ranker was fitted on ``database``'s pairs (by the ``pairs_sha256`` it records, else by
    the pair count, for rankers fitted before the digest was recorded), else why not, in a few words."""
    digest = database.digest()
    for task, ranker in rankers.items():
        fitted = ranker.fitted_on
        if fitted.get("pairs_sha256", digest) != digest or fitted.get("pairs") != len(database):
            return (f"the {task} ranker was fitted on {fitted.get('pairs')} other pairs "
                    f"({fitted.get('database', 'unnamed')}), not these {len(database)}")
    return None


def fit_rankers(database: "NeighbourDatabase", out: str | Path, tasks: Sequence[str] = (MOL2TEXT, TEXT2MOL),
                pool: int = POOL, progress: bool = True) -> dict[str, NeighbourRanker]:
    """Fit one ranker per task on ``database`` and write them to ``out`` (JSON, what a checkpoint's
    ``t2m.json`` "neighbours" → "ranker" names); on the command line ``t2m ranker``."""
    rankers = {task: fit_ranker(database, task, pool, progress=progress) for task in tasks}
    save_rankers(out, rankers)
    return rankers
