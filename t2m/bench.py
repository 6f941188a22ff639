"""``t2m bench``: does retrieval help, in which direction, at what cost?

    t2m bench [--model DIR] [--data DIR] [--out DIR] [--tasks text2mol,mol2text] [--beams 1,5]
              [--limit N] [--dev-limit N] [--fractions 0.25,0.5,1.0] [--store-dir DIR] [--no-fcd]
              [--bootstrap 1000]

For each task, on the test split of the data setting (ChEBI-20 benchmark setting by default), it runs

- ``retrieval``: the baseline with no model (:mod:`t2m.baselines`), database = the setting's train split;
- ``model``: the checkpoint alone, greedy and beam (text2mol with and without valid-SMILES reranking);
- ``model+knn``: the same with the task's kNN-MT datastore (built under ``--store-dir`` when missing,
  tuned on the dev slice with ``t2m tune`` when it has no tuned λ, k, T);

scores every system with ``t2m eval``'s full metric set, and measures what retrieval costs (molecules/s
and output tokens/s with and without kNN, datastore build time, entries, bytes, peak memory). Paired
bootstrap 95% intervals (rows resampled; BLEU recomputed from resampled n-gram statistics, as
sacrebleu's paired bootstrap) give the kNN-minus-model differences on the headline metrics, and
kNN-minus-retrieval. Datastores built from 25/50/100% of the training pairs (the model fixed, the λ, k, T
tuned on the full store) show how the gain scales with the datastore.

System names: the headline beam (the largest of ``--beams``) has the bare names ``model``,
``model+knn``, ``retrieval``; other beams add ``@greedy`` / ``@beam<N>``; text2mol without reranking adds
``/no-rerank``.

Outputs in ``--out``: ``bench.json`` (every number, settings, evaluation signatures), ``bench.md``
(the tables for docs/results.md), ``plots/*.png``, ``examples.json`` and ``report.html`` (:mod:`t2m.report`), and
``predictions/<task>/<system>.tsv`` (MolT5's format, ready for ``t2m eval``). Decoded predictions are
reused on a rerun with the same settings (an interrupted bench resumes); ``--fresh`` recomputes them.

Everything is a thin layer over :func:`run_bench` (Python: ``run_bench(BenchConfig(...))``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# datastore builds, tuning and the λ sweep batch as `t2m datastore build` does (decoding: t2m.generate.default_batch_size)
from t2m.batching import DEFAULT_BATCH_SIZE
from t2m.bench_config import SWEEP_LAMBDAS, BenchConfig
from t2m.io import atomic_write_text
from t2m.io import write_json_atomic as write_json
from t2m.memory import current_rss_mb, peak_rss_mb
from t2m.tasks import MOL2TEXT, TEXT2MOL, source_and_target
from t2m.data import SETTINGS

# headline metrics per task: the first is the one the verdict reads first (and examples rank by)
HEADLINE_METRICS = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("exact_match", "morgan_fts", "validity")}
PRIMARY_METRIC = {MOL2TEXT: "bleu4", TEXT2MOL: "exact_match"}
# metrics the model (with or without kNN) is compared with the retrieval baseline on
VERSUS_RETRIEVAL = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("exact_match", "morgan_fts", "maccs_fts")}
LOWER_IS_BETTER = {"levenshtein", "fcd"}
EXAMPLE_SYSTEMS = ("model", "model+knn", "retrieval")


def folder_bytes(path: Path) -> int:
    """Total size of the files directly and indirectly inside ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_json_atomic(path: Path, data: Any) -> None:
    write_json(path, data, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ per-row scores


@dataclass
class RowScores:
    """Per-row values from which the headline corpus metrics are recomputed on any resample of rows.

    text2mol (MolT5 mode, as :func:`evaluation.evaluate_text2mol`): ``exact`` InChI equal, ``valid`` not a
    bad row, ``parsed`` the output parses (the fingerprint similarities average over these rows only),
    ``morgan`` Morgan-count Tanimoto (NaN where not parsed).
    mol2text: ``ngrams`` (n, 10) = clipped matches for orders 1-4, n-gram counts (nltk's max(1, .)) for
    orders 1-4, hypothesis length, reference length — summed over rows they are the corpus BLEU
    statistics; ``meteor`` per-row METEOR.
    """

    task: str
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))

    def head(self, n: int) -> "RowScores":
        """The first ``n`` rows' scores."""
        return RowScores(self.task, {k: v[:n] for k, v in self.values.items()})

    def corpus(self, metric: str, weights: np.ndarray | None = None) -> float:
        """The corpus value of ``metric`` with rows counted ``weights`` times (None: once each)."""
        return float(self.corpus_many(metric, None if weights is None else weights[None, :])[0])

    def corpus_many(self, metric: str, counts: np.ndarray | None) -> np.ndarray:
        """Corpus ``metric`` for each row-count vector in ``counts`` (samples, n); None: all rows once."""
        n = len(self)
        counts = np.ones((1, n), dtype=np.int64) if counts is None else counts
        v = self.values
        if metric in ("exact_match", "validity"):
            x = v["exact" if metric == "exact_match" else "valid"].astype(np.float64)
            return counts @ x / counts.sum(axis=1)
        if metric in ("morgan_fts", "maccs_fts"):
            parsed = v["parsed"].astype(np.float64)
            sims = np.nan_to_num(v["morgan" if metric == "morgan_fts" else "maccs"], nan=0.0) * parsed
            denominator = counts @ parsed
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(denominator > 0, (counts @ sims) / np.maximum(denominator, 1e-300), np.nan)
        if metric == "meteor":
            return counts @ v["meteor"] / counts.sum(axis=1)
        if metric in ("bleu4", "bleu2"):
            from evaluation.bleu import NgramStats, bleu_from_stats

            weights = (0.25,) * 4 if metric == "bleu4" else (0.5, 0.5)
            sums = counts @ v["ngrams"]  # (samples, 10)
            out = np.empty(len(sums))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i, s in enumerate(sums.astype(np.int64).tolist()):
                    out[i] = bleu_from_stats(NgramStats(tuple(s[0:4]), tuple(s[4:8]), s[8], s[9]), weights)
            return out
        raise KeyError(f"no per-row form of metric {metric!r}")

    def row_key(self, i: int) -> tuple[float, ...]:
        """How good row ``i`` is by the task's headline metric (for picking best / worst examples):
        text2mol (exact, Morgan Tanimoto or -1); mol2text (sentence BLEU-4, METEOR)."""
        v = self.values
        if self.task == TEXT2MOL:
            sim = v["morgan"][i]
            return (float(v["exact"][i]), -1.0 if math.isnan(sim) else float(sim))
        return (self.sentence_bleu4(i), float(v["meteor"][i]))

    def sentence_bleu4(self, i: int) -> float:
        weights = np.zeros(len(self), dtype=np.int64)
        weights[i] = 1
        return self.corpus("bleu4", weights)


def text2mol_row_scores(references: Sequence[str], outputs: Sequence[str]) -> RowScores:
    """Per-row text2mol values computed with the evaluator's own RDKit code (:mod:`evaluation.molecules`)."""
    from evaluation.molecules import score_rows

    rows, _ = score_rows(list(references), list(outputs), [None] * len(references))
    return RowScores(TEXT2MOL, {
        "exact": np.array([r.inchi_equal for r in rows], dtype=bool),
        "valid": np.array([not r.inchi_failed for r in rows], dtype=bool),
        "parsed": np.array([r.output_parsed and r.similarities is not None for r in rows], dtype=bool),
        "morgan": np.array([r.similarities[2] if (r.output_parsed and r.similarities is not None) else np.nan
                            for r in rows], dtype=np.float64),
        "maccs": np.array([r.similarities[0] if (r.output_parsed and r.similarities is not None) else np.nan
                           for r in rows], dtype=np.float64),
    })


class CaptionScorer:
    """Per-row mol2text values with the evaluator's tokenizer (SciBERT WordPiece) and METEOR scorer."""

    def __init__(self) -> None:
        from evaluation.meteor import MeteorScorer
        from evaluation.text_tokenizer import TextTokenizer

        self.tokenizer = TextTokenizer.load()
        self.meteor = MeteorScorer.for_vocabulary(self.tokenizer.vocabulary, self.tokenizer.vocab_sha256)

    def __call__(self, references: Sequence[str], outputs: Sequence[str]) -> RowScores:
        from evaluation.bleu import ngram_stats
        from evaluation.mol2text import strip_cls

        refs = self.tokenizer.tokenize_batch(list(references))
        hyps = self.tokenizer.tokenize_batch([strip_cls(o) for o in outputs])
        ngrams = np.zeros((len(refs), 10), dtype=np.int64)
        for i, (r, h) in enumerate(zip(refs, hyps)):
            s = ngram_stats([r], [h], 4)
            ngrams[i] = [*s.numerators, *s.denominators, s.hyp_length, s.ref_length]
        meteor = np.array([self.meteor.score(r, h) for r, h in zip(refs, hyps)], dtype=np.float64)
        return RowScores(MOL2TEXT, {"ngrams": ngrams, "meteor": meteor})


def paired_bootstrap(system: RowScores, baseline: RowScores, metric: str, samples: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of ``metric(system) - metric(baseline)`` over rows (Koehn 2004; sacrebleu's
    ``--paired-bs``): the same resampled rows for both systems, the corpus metric recomputed on each
    resample. Returns the observed difference, the 95% percentile interval, and the share of resamples
    in which the system is not better (a one-sided p-value estimate)."""
    n = len(system)
    if len(baseline) != n:
        raise ValueError(f"paired bootstrap needs the same rows: {n} vs {len(baseline)}")
    observed = system.corpus(metric) - baseline.corpus(metric)
    rng = np.random.default_rng(seed)
    deltas_parts = []
    for start in range(0, samples, 200):  # (200, n) row counts at a time
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(200, samples - start))
        deltas_parts.append(system.corpus_many(metric, counts) - baseline.corpus_many(metric, counts))
    deltas = np.concatenate(deltas_parts) if deltas_parts else np.array([])
    deltas = deltas[np.isfinite(deltas)]
    if not math.isfinite(observed):  # e.g. Morgan FTS of a system none of whose outputs parse
        deltas = np.array([])
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    low, high = (np.percentile(deltas, [2.5, 97.5]) if len(deltas) else (np.nan, np.nan))
    return {
        "metric": metric, "delta": observed, "ci95": [float(low), float(high)],
        "samples": int(len(deltas)), "p_not_better": float(np.mean(sign * deltas <= 0)) if len(deltas) else None,
        "excludes_zero": bool(len(deltas) and (low > 0 or high < 0)),
    }


# ------------------------------------------------------------------------------------------- systems


@dataclass
class SystemRun:
    """One system's outputs on the test rows and how long they took."""

    name: str
    settings: dict[str, Any]
    outputs: list[str]
    seconds: float
    output_tokens: int
    flags: dict[str, int] = field(default_factory=dict)
    neighbours: list[int] | None = None  # retrieval: the training row each output came from
    memory: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    first_beam: list[str] | None = None  # text2mol: the top beam of each row (the output without reranking)

    @property
    def speed(self) -> dict[str, Any]:
        n = len(self.outputs)
        return {"seconds": round(self.seconds, 3), "molecules_per_s": round(n / self.seconds, 3) if self.seconds > 0 else None,
                "tokens_per_s": round(self.output_tokens / self.seconds, 1) if self.seconds > 0 else None,
                "output_tokens": self.output_tokens, "rows": n, "reused_from_cache": self.reused}


def system_name(base: str, beam: int, headline_beam: int, rerank: bool = True, task: str = TEXT2MOL) -> str:
    """``model`` / ``model+knn`` at the headline beam, ``@greedy`` / ``@beam<N>`` otherwise, and
    ``/no-rerank`` for text2mol without valid-SMILES reranking."""
    name = base if beam == headline_beam else f"{base}@{'greedy' if beam == 1 else f'beam{beam}'}"
    return name if rerank or task != TEXT2MOL else f"{name}/no-rerank"


def _sha(strings: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for s in strings:
        digest.update(s.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class PredictionCache:
    """``predictions/<task>/<system>.tsv`` (MolT5 format) plus a JSON sidecar with the settings they were
    made with; a later run with equal settings reuses them instead of decoding again."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def _paths(self, task: str, name: str) -> tuple[Path, Path]:
        safe = name.replace("/", "_").replace("+", "-").replace("@", "_").replace("%", "pct")
        return self.root / task / f"{safe}.tsv", self.root / task / f"{safe}.json"

    def load(self, task: str, name: str, key: dict[str, Any]) -> SystemRun | None:
        """The cached run of ``name`` made with settings ``key``, or None."""
        from evaluation.predictions import read_predictions

        tsv, sidecar = self._paths(task, name)
        if not self.enabled or not (tsv.is_file() and sidecar.is_file()):
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            if meta.get("key") != json.loads(json.dumps(key, default=_json_default)):
                return None
            outputs = list(read_predictions(tsv).outputs)
        except (OSError, ValueError, KeyError):
            return None
        if len(outputs) != meta.get("rows"):
            return None
        return SystemRun(name, meta["settings"], outputs, meta["seconds"], meta["output_tokens"], meta.get("flags", {}),
                         meta.get("neighbours"), meta.get("memory", {}), reused=True, first_beam=meta.get("first_beam"))

    def save(self, task: str, run: SystemRun, key: dict[str, Any], sources: Sequence[str],
             references: Sequence[str]) -> Path:
        from t2m.data import write_predictions

        tsv, sidecar = self._paths(task, run.name)
        tsv.parent.mkdir(parents=True, exist_ok=True)
        write_predictions(tsv, task, sources, references, run.outputs)
        write_json_atomic(sidecar, {"key": key, "settings": run.settings, "rows": len(run.outputs),
                                    "seconds": run.seconds, "output_tokens": run.output_tokens, "flags": run.flags,
                                    "neighbours": run.neighbours, "memory": run.memory, "first_beam": run.first_beam})
        return tsv


def count_output_tokens(tokenizer: Any, outputs: Sequence[str]) -> int:
    """Tokens of the chosen outputs under the model's tokenizer, each with its end-of-sequence token."""
    if not outputs:
        return 0
    ids = tokenizer(list(outputs), add_special_tokens=False)["input_ids"]
    return int(sum(len(x) + 1 for x in ids))


def effective_decoding_options(translator: Any, task: str, config: BenchConfig) -> dict[str, Any]:
    """The repetition options every decoding of ``task`` uses: the bench's, else the model's defaults."""
    return translator.decoding_options(task, repetition_penalty=config.repetition_penalty,
                                       no_repeat_ngram_size=config.no_repeat_ngram_size)


def decode_system(translator: Any, name: str, sources: Sequence[str], task: str, beam: int, rerank: bool,
                  knn: Any, config: BenchConfig, pool: Any = None) -> SystemRun:
    """Translate ``sources`` with ``translator`` -- or, given a :class:`t2m.decode_pool.DecodePool`, in
    its workers at once -- and time it (wall clock)."""
    from collections import Counter

    from t2m.generate import default_batch_size

    options = dict(task=task, num_beams=beam, valid_smiles=rerank, batch_size=config.batch_size,
                   max_new_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty,
                   no_repeat_ngram_size=config.no_repeat_ngram_size)
    rss_before = current_rss_mb()
    memory: dict[str, Any] = {}
    if pool is not None:
        from t2m.decode_pool import KNNSpec

        spec = None if knn is None else KNNSpec(str(knn.store.path), knn.k, knn.lambda_, knn.temperature,
                                                pairs=knn.pairs)
        done = pool.translate(list(sources), knn=spec, progress=config.progress, **options)
        results, seconds = done.translations, done.seconds
        memory = {"workers": pool.jobs, "threads_per_worker": pool.threads, "chunk_seconds": done.chunk_seconds,
                  "worker_peak_rss_mb": sorted(done.worker_peak_rss_mb.values())}
    else:
        # warm-up (untimed): the first generate call of a configuration pays one-off costs
        translator.translate(list(sources[:2]), knn=knn, **options)
        started = time.perf_counter()
        results = translator.translate(list(sources), progress=config.progress, knn=knn, **options)
        seconds = time.perf_counter() - started
    outputs = [r.output for r in results]
    flags = Counter(flag for r in results for flag in r.flags)
    settings = {"decoder": "model+knn" if knn is not None else "model", "num_beams": beam,
                "valid_smiles_rerank": bool(rerank and task == TEXT2MOL), "smiles_syntax": task == TEXT2MOL,
                "smiles_valence": task == TEXT2MOL,
                "max_new_tokens": config.max_new_tokens,
                "batch_size": config.batch_size or default_batch_size(beam),
                "repetition": effective_decoding_options(translator, task, config)}
    if knn is not None:
        settings["knn"] = {"k": knn.k, "lambda": knn.lambda_, "temperature": knn.temperature, "pairs": knn.pairs,
                           "store": str(knn.store.path), "entries": knn.store.count}
    first_beam = [r.candidates[0] if r.candidates else r.output for r in results] if task == TEXT2MOL else None
    return SystemRun(name, settings, outputs, seconds, count_output_tokens(translator.tokenizer, outputs), dict(flags),
                     memory={"rss_before_mb": rss_before, "rss_after_mb": current_rss_mb(),
                             "peak_rss_so_far_mb": peak_rss_mb(), **memory}, first_beam=first_beam)


def without_rerank(run: SystemRun, name: str, tokenizer: Any) -> SystemRun:
    """The text2mol system without valid-SMILES reranking, read off a reranked run: beam search is the
    same, only the choice among its n-best differs (the top beam instead of the best valid one), so no
    second decoding is needed; the timing is the reranked run's."""
    if run.first_beam is None:
        raise ValueError(f"{run.name}: no top-beam outputs recorded; rerun with --fresh")
    settings = {**run.settings, "valid_smiles_rerank": False, "derived_from": run.name}
    flags = {k: v for k, v in run.flags.items() if k != "no valid SMILES among the beams"}
    return SystemRun(name, settings, list(run.first_beam), run.seconds, count_output_tokens(tokenizer, run.first_beam),
                     flags, memory=run.memory, reused=run.reused)


def retrieval_system(task: str, train: Sequence[dict], sources: Sequence[str], progress: bool) -> SystemRun:
    """The no-model baseline over the training pairs (:mod:`t2m.baselines`); the timing covers the
    queries, the database index is built before the clock starts (its time is in ``settings``)."""
    from t2m.baselines import MoleculeRetriever, TextRetriever

    started = time.perf_counter()
    if task == MOL2TEXT:
        retriever = MoleculeRetriever([r["smiles"] for r in train], [r["description"] for r in train])
        how = "caption of the most similar training molecule (Morgan r=2 2048-bit Tanimoto)"
    else:
        retriever = TextRetriever([r["description"] for r in train], [r["smiles"] for r in train])
        how = "SMILES of the most similar training description (TF-IDF word 1-2-grams, cosine)"
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = retriever.retrieve(list(sources), progress=progress)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.split()) for o in found.outputs)
    return SystemRun("retrieval", {"decoder": "retrieval", "method": how, "database_rows": len(train),
                                   "database_index_seconds": round(index_seconds, 3), "fallbacks": found.n_fallback},
                     found.outputs, seconds, tokens, {"fallback": found.n_fallback} if found.n_fallback else {},
                     neighbours=list(found.neighbours),
                     memory={"peak_rss_so_far_mb": peak_rss_mb()})


# ----------------------------------------------------------------------------------------- datastores


def store_path(config: BenchConfig, task: str, fraction: float) -> Path:
    root = config.store_dir if config.store_dir is not None else config.out / "stores"
    return Path(root) / (task if fraction == 1.0 else f"{task}-{round(fraction * 100):g}pct")


def prepare_task_stores(config: BenchConfig, model_dir: Path, task: str) -> dict[str, Any]:
    """Build every missing datastore of ``task`` -- all the training pairs with the model, each of
    ``config.fractions`` cut from that one (:func:`t2m.knn_store.subset_task_datastore`: the same
    entries, no model run) -- and tune the full one on the dev slice (``t2m tune``) when it has only
    default λ, k, T. Returns the seconds each step took here and this process's peak memory; meant to
    run in a child process (:func:`run_prepare`), so that its memory is measured apart from decoding's."""
    from t2m.knn_store import build_task_datastore, subset_task_datastore
    from datastore.store import Datastore
    from t2m.tune import tune

    built: dict[float, float] = {}
    for fraction in [1.0] + sorted(f for f in set(config.fractions) if f != 1.0):
        path = store_path(config, task, fraction)
        if (path / "datastore.json").is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if fraction == 1.0:
            print(f"bench: building the {task} datastore in {path}", file=sys.stderr)
            build_task_datastore(model_dir, task, path, config.data, setting=config.setting,
                                 dev_size=config.dev_size, index_factory=config.index,
                                 batch_size=config.batch_size or DEFAULT_BATCH_SIZE,
                                 allow_pickle=config.allow_pickle, progress=config.progress)
        else:
            print(f"bench: cutting the {task} datastore of {fraction:.0%} of the training pairs into {path}",
                  file=sys.stderr)
            subset_task_datastore(store_path(config, task, 1.0), path, fraction, index_factory=config.index,
                                  progress=config.progress)
        built[fraction] = round(time.perf_counter() - started, 3)
    tuned = None
    full = store_path(config, task, 1.0)
    if Datastore.load(full).meta.get("knn", {}).get("source", "default") == "default":
        print(f"bench: tuning the {task} datastore on the dev slice", file=sys.stderr)
        started = time.perf_counter()
        tune(full, model_dir, config.data, dev_rows=config.dev_limit, dev_size=config.dev_size,
             batch_size=config.batch_size or DEFAULT_BATCH_SIZE, max_new_tokens=config.max_new_tokens,
             pairs=config.pairs, allow_pickle=config.allow_pickle, progress=config.progress)
        tuned = round(time.perf_counter() - started, 1)
    return {"build_seconds": built, "tune_seconds": tuned, "peak_rss_mb": peak_rss_mb()}


def run_prepare(config: BenchConfig, model_dir: Path, task: str) -> dict[str, Any]:
    """:func:`prepare_task_stores` in a fresh (spawned) process when ``config.isolate_builds``, else here."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not config.isolate_builds or (main_file is not None and not os.path.exists(main_file)):
        # (a script read from stdin cannot be re-imported by a spawned child: stay in this process)
        return {**prepare_task_stores(config, model_dir, task), "process": "bench process"}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(prepare_task_stores, config, model_dir, task).result()
    return {**result, "process": "child process"}


def describe_store(config: BenchConfig, task: str, fraction: float, prepared: dict[str, Any]
                   ) -> tuple[Any, dict[str, Any]]:
    """Load the task's datastore at ``fraction`` of the training pairs and describe it (entries, bytes,
    build time measured in this run or, for a store built earlier, recorded in the store)."""
    from datastore.store import Datastore

    path = store_path(config, task, fraction)
    store = Datastore.load(path)
    data_meta = store.meta.get("data", {})
    if store.task != task:
        raise ValueError(f"{path}/datastore.json: a {store.task} store where the {task} store belongs; "
                         "pass another --store-dir or delete this folder")
    if abs(float(data_meta.get("fraction", 1.0)) - fraction) > 1e-9:
        raise ValueError(f"{path}/datastore.json: built from {data_meta.get('fraction')} of the training pairs, "
                         f"not {fraction}; pass another --store-dir or delete this folder")
    if config.dev_size is not None and data_meta.get("dev_size") not in (None, config.dev_size):
        raise ValueError(f"{path}/datastore.json: built with dev size {data_meta.get('dev_size')}, not "
                         f"{config.dev_size}; its training pairs differ: pass another --store-dir or delete it")
    index = store.meta.get("index", {})
    build = store.meta.get("build", {})
    derived = build.get("subset_of")
    recorded = build.get("subset_seconds") or (build.get("compute_seconds") or 0) + (index.get("build_seconds") or 0)
    seconds = prepared["build_seconds"].get(fraction)
    info = {
        "path": str(path), "task": task, "fraction": fraction, "rows": data_meta.get("rows"),
        "of_rows": data_meta.get("of_rows"), "entries": store.count, "dim": store.dim, "layer": store.layer,
        "bytes_on_disk": folder_bytes(path), "built_here": seconds is not None,
        "build_seconds": seconds, "build_seconds_recorded": round(recorded, 3),
        "cut_from": derived,  # a subset store: its entries copied from this store's, only its index built
        "build_tokens_per_s": build.get("tokens_per_second"),
        "build_peak_rss_mb": prepared["peak_rss_mb"] if prepared["build_seconds"] else None,
        "build_process": prepared["process"],
        "index": {k: index.get(k) for k in ("factory", "nprobe", "efSearch", "bytes", "bytes_per_entry", "build_seconds")},
    }
    info["bytes_per_entry"] = round(info["bytes_on_disk"] / max(store.count, 1), 1)
    return store, info


def check_store_model(store: Any, translator: Any) -> None:
    from datastore.store import DatastoreMismatchError

    try:
        store.check_matches(model=translator.model, tokenizer=translator.tokenizer)
    except DatastoreMismatchError as error:
        raise DatastoreMismatchError(f"{error}\nbench: pass another --store-dir (or delete {store.path}) so that "
                                     "the bench builds a store for this model") from None


def knn_record(store: Any, prepared: dict[str, Any]) -> dict[str, Any]:
    """The store's kNN record (chosen λ, k, T, where they came from, tuning's finalists) and whether
    this run tuned it."""
    record = dict(store.meta["knn"])
    record.update({"tuned_here": prepared["tune_seconds"] is not None, "tune_seconds": prepared["tune_seconds"]})
    return record


def lambda_sweep(config: BenchConfig, translator: Any, store: Any, task: str, dev: Sequence[dict],
                 train_sources: set[str]) -> dict[str, Any]:
    """Quality against λ on the dev slice at the tuned k and T: the teacher-forced mean log-likelihood of
    the reference tokens for every λ of ``config.lambda_sweep`` (one pass), and, on ``config.sweep_rows``
    dev rows, the task metric of greedy decoding at each λ."""
    from datastore.build import PairBatches
    from t2m.tune import Candidate, decode, dev_metric, retrieval_scopes, teacher_forced_scores
    from t2m.batching import encode_batch

    params = store.knn_params
    pairs = [source_and_target(r["smiles"], r["description"], task) for r in dev]
    pairs = [p for p in pairs if p[0] not in train_sources]
    if config.dev_limit:
        pairs = pairs[: config.dev_limit]
    sweep = {"k": params.k, "temperature": params.temperature, "pairs": params.pairs or 0, "tuned_lambda": params.lambda_,
             "dev_rows": len(pairs), "decoded_rows": 0, "points": []}
    if not pairs or not config.lambda_sweep:
        return sweep
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    prompt_style = translator.info.prompt_style
    tokenizer, model = translator.tokenizer, translator.model

    def encode(src: Sequence[str], tgt: Sequence[str]) -> dict:
        return encode_batch(tokenizer, src, tgt, task, prompt_style)

    model_sources = translator.model_inputs(sources, task)  # with neighbours where the checkpoint reads them
    batches = PairBatches(encode, model_sources, references, config.batch_size or DEFAULT_BATCH_SIZE)
    scope = params.pairs or 0
    reuse = translator.pair_search(store) if scope else None  # the translator's, built for the model + kNN runs
    retriever, pair_rows = retrieval_scopes(store, sources, [scope], pair_search=reuse)[scope]
    grid = [Candidate(params.k, float(lam), params.temperature, scope) for lam in config.lambda_sweep]
    scores, _ = teacher_forced_scores(model, store, batches, grid, retriever, progress=False, pair_rows=pair_rows)
    rows = min(len(sources), config.sweep_rows or 0)
    sweep["decoded_rows"] = rows
    for cand, score in zip(grid, scores):
        point: dict[str, Any] = {"lambda": cand.lambda_, "dev_log_likelihood": round(float(score), 5)}
        if rows:
            outputs = decode(model, tokenizer, store, model_sources[:rows], task, prompt_style,
                             None if cand.lambda_ == 0 else cand, retriever, num_beams=1,
                             batch_size=config.batch_size or DEFAULT_BATCH_SIZE, max_new_tokens=config.max_new_tokens,
                             progress=False, generate_options=effective_decoding_options(translator, task, config),
                             pair_rows=None if pair_rows is None else pair_rows[:rows])
            _, metric = dev_metric(task, references[:rows], outputs)
            point["metric"] = metric
        sweep["points"].append(point)
    return sweep


# ------------------------------------------------------------------------------------------- examples


def _neighbour_context(tokenizer: Any, target: str, position: int, width: int = 4) -> str:
    """The neighbour's target text around its token ``position``, the token itself in [[ ]]."""
    ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if not 0 <= position < len(ids):
        return ""
    before = tokenizer.decode(ids[max(0, position - width):position], skip_special_tokens=True)
    token = tokenizer.decode(ids[position:position + 1], skip_special_tokens=False)
    after = tokenizer.decode(ids[position + 1:position + 1 + width], skip_special_tokens=True)
    return f"{before}[[{token}]]{after}"


def trace_neighbours(translator: Any, store: Any, task: str, source: str, train: Sequence[dict],
                     knn_params: Any, config: BenchConfig, top_tokens: int = 5) -> dict[str, Any] | None:
    """Greedy kNN decoding of ``source`` traced by :func:`t2m.knn_inspect.inspect_translation`: the tokens
    retrieval moved most, each with its nearest training entries. None when tracing fails."""
    from t2m.knn_inspect import inspect_translation

    try:
        output, report = inspect_translation(
            store, translator.model, translator.tokenizer, translator.model_inputs([source], task)[0], task,
            prompt_style=translator.info.prompt_style,
            k=knn_params.k, lambda_=knn_params.lambda_, temperature=knn_params.temperature, neighbours=3,
            max_new_tokens=config.max_new_tokens, records=list(train))
    except Exception as error:  # an example is decoration: never fatal to the bench
        print(f"bench: tracing retrieval for an example failed: {error}", file=sys.stderr)
        return None
    moved = sorted(report, key=lambda t: -abs(t.moved))[:top_tokens]
    tokens = []
    for item in sorted(moved, key=lambda t: t.step):
        near = []
        for n in item.neighbours:
            record = train[n.row] if 0 <= n.row < len(train) else None
            target = source_and_target(record["smiles"], record["description"], task)[1] if record else ""
            near.append({"row": n.row, "cid": n.cid, "position": n.position, "token": n.token,
                         "distance": round(n.distance, 4),
                         "context": _neighbour_context(translator.tokenizer, target, n.position) if target else ""})
        tokens.append({"step": item.step, "token": item.token, "p_model": round(item.p_model, 4),
                       "p_mixed": round(item.p_mixed, 4), "moved": round(item.moved, 4), "neighbours": near})
    scope = "" if not knn_params.pairs else ", over the whole store (the runs searched each input's nearest pairs)"
    return {"greedy_output": output, "tokens": tokens, "decoding": f"greedy with kNN (traced{scope})"}


def pick_examples(task: str, rows: dict[str, RowScores], runs: dict[str, SystemRun], count: int
                  ) -> dict[str, list[int]]:
    """Row indices for the report: best and worst rows of ``model+knn`` by the headline metric, and
    rows where retrieval changed the model's output the most (largest per-row difference first)."""
    main = "model+knn" if "model+knn" in rows else "model"
    n = len(rows[main])
    order = sorted(range(n), key=lambda i: rows[main].row_key(i))
    picks = {"best": list(reversed(order[-count:])), "worst": order[:count], "changed": []}
    if "model+knn" in runs and "model" in runs:
        changed = [i for i in range(n) if runs["model+knn"].outputs[i] != runs["model"].outputs[i]]

        def gain(i: int) -> float:
            a, b = rows["model+knn"].row_key(i), rows["model"].row_key(i)
            return abs(a[0] - b[0]) * 10 + abs(a[1] - b[1])

        picks["changed"] = sorted(changed, key=lambda i: (-gain(i), i))[:count]
    return picks


def example_rows(task: str, indices: Sequence[int], test: Sequence[dict], sources: Sequence[str],
                 references: Sequence[str], runs: dict[str, SystemRun], rows: dict[str, RowScores],
                 train: Sequence[dict]) -> list[dict[str, Any]]:
    out = []
    for i in indices:
        systems = {}
        for name in EXAMPLE_SYSTEMS:
            if name not in runs:
                continue
            v = rows[name].values
            entry: dict[str, Any] = {"text": runs[name].outputs[i]}
            if task == TEXT2MOL:
                entry.update(valid=bool(v["valid"][i]) and bool(v["parsed"][i]), exact=bool(v["exact"][i]),
                             tanimoto=None if math.isnan(v["morgan"][i]) else round(float(v["morgan"][i]), 4))
            else:
                entry.update(bleu4=round(rows[name].sentence_bleu4(i), 4), meteor=round(float(v["meteor"][i]), 4))
            if name == "retrieval" and runs[name].neighbours:
                row = runs[name].neighbours[i]
                if 0 <= row < len(train):
                    entry["retrieved_cid"] = train[row].get("cid")
            systems[name] = entry
        out.append({"row": i, "cid": test[i].get("cid"), "source": sources[i], "reference": references[i],
                    "systems": systems})
    return out


# ------------------------------------------------------------------------------------------- verdicts


def _verdict_word(comparison: dict[str, Any], better: str, worse: str, unclear: str) -> str:
    """``better`` / ``worse`` when the 95% interval excludes zero on that side, else ``unclear``."""
    if not comparison["excludes_zero"]:
        return unclear
    return better if comparison["delta"] > 0 else worse


def verdicts(bench: dict[str, Any]) -> list[str]:
    """Plain statements answering the bench's questions from the numbers (never flattering)."""
    lines = []
    for task, t in bench["tasks"].items():
        comps = {(c["system"], c["baseline"], c["metric"]): c for c in t.get("comparisons", [])}
        primary = PRIMARY_METRIC[task]
        knn = (t.get("datastore") or {}).get("knn", {})
        if knn.get("lambda") == 0:
            lines.append(f"{task}: tuning on the dev slice chose λ = 0, i.e. no retrieval: model + kNN decodes as "
                         "the model alone.")
        changed = t.get("changed_outputs")
        if changed is not None:
            lines.append(f"{task}: retrieval changed {changed} of {t['rows']} test outputs at the headline beam.")
        c = comps.get(("model+knn", "model", primary))
        if c is not None and c.get("delta") is not None and None not in c["ci95"]:
            lo, hi = c["ci95"]
            word = _verdict_word(c, "improves on", "is worse than", "is not distinguishable from")
            lines.append(f"{task}: model + kNN {word} the model alone on {primary} "
                         f"(difference {c['delta']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], {t['rows']} test rows).")
        others = []
        for metric in HEADLINE_METRICS[task][1:]:
            c = comps.get(("model+knn", "model", metric))
            if c is not None and c.get("delta") is not None and None not in c["ci95"]:
                word = _verdict_word(c, "better", "worse", "no clear difference")
                others.append(f"{metric} {c['delta']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] ({word})")
        if others:
            lines.append(f"{task}: model + kNN minus the model alone on the other headline metrics: " + "; ".join(others) + ".")
        for system, label in (("model", "the model"), ("model+knn", "model + kNN")):
            for metric in VERSUS_RETRIEVAL[task]:
                c = comps.get((system, "retrieval", metric))
                if c is None or c.get("delta") is None or None in c["ci95"]:
                    if c is not None:
                        lines.append(f"{task}: {label} vs the retrieval baseline on {metric}: undefined "
                                     "(no output of one system parses).")
                    continue
                lo, hi = c["ci95"]
                word = _verdict_word(c, "beats", "does NOT beat (is worse than)",
                                     "does NOT clearly beat (interval includes zero)")
                lines.append(f"{task}: {label} {word} the retrieval baseline on {metric} "
                             f"(difference {c['delta']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}]).")
    return lines


# ----------------------------------------------------------------------------------------------- main


def _dev_records(config: BenchConfig):
    from t2m.data import DEV_SIZE, load_chebi20_records

    return load_chebi20_records(config.data, config.setting, dev_size=config.dev_size if config.dev_size is not None else DEV_SIZE)


def _evaluate(task: str, references: Sequence[str], outputs: Sequence[str], fcd: bool) -> Any:
    from evaluation import evaluate_mol2text, evaluate_text2mol

    if task == TEXT2MOL:
        return evaluate_text2mol(list(references), list(outputs), fcd=fcd)
    return evaluate_mol2text(list(references), list(outputs))


def run_task(config: BenchConfig, task: str, translator: Any, model_dir: Path, splits: Any,
             caption_scorer: CaptionScorer | None, cache: PredictionCache, model_fp: str,
             prepared: dict[str, Any] | None = None, pool: Any = None) -> tuple[dict, dict]:
    """Every system, comparison and measurement of one task; returns (bench.json part, examples part).
    ``prepared``: :func:`prepare_task_stores`' record when the stores were prepared beforehand (else
    it runs here); ``pool``: a :class:`t2m.decode_pool.DecodePool` that every decoding is split over."""
    from t2m.generate import KNNSettings

    test = splits.test[: config.limit] if config.limit else list(splits.test)
    pairs = [source_and_target(r["smiles"], r["description"], task) for r in test]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    train = list(splits.train)
    rows_key = {"model": model_fp, "sources": _sha(sources), "references": _sha(references),
                "max_new_tokens": config.max_new_tokens,
                "repetition": effective_decoding_options(translator, task, config)}
    runs: dict[str, SystemRun] = {}

    def run_or_reuse(name: str, key: dict[str, Any], make, rows: int | None = None) -> SystemRun:
        """The cached run of ``name`` with these settings or a new one from ``make()``, on the first
        ``rows`` test rows (None: all)."""
        rows = len(sources) if rows is None else rows
        full_key = {**rows_key, **key}
        if rows != len(sources):
            full_key.update(sources=_sha(sources[:rows]), references=_sha(references[:rows]))
        cached = cache.load(task, name, full_key)
        if cached is not None:
            print(f"bench: {task} {name}: reusing {len(cached.outputs)} cached predictions", file=sys.stderr)
            return cached
        print(f"bench: {task} {name} on {rows} test rows", file=sys.stderr)
        started = time.perf_counter()
        run = make()
        run.name = name
        cache.save(task, run, full_key, sources[:rows], references[:rows])
        print(f"bench: {task} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return run

    # the retrieval baseline (no model)
    runs["retrieval"] = run_or_reuse("retrieval", {"system": "retrieval", "train": _sha([r["cid"] for r in train])},
                                     lambda: retrieval_system(task, train, sources, config.progress))

    # the model alone
    plan = []  # (beam, rerank): text2mol beams > 1 also without reranking (read off the same decoding)
    for beam in sorted(config.beams):
        plan += [(beam, True)] + ([(beam, False)] if task == TEXT2MOL and beam > 1 else [])

    def run_plan(base: str, key: dict[str, Any], knn: Any) -> None:
        for beam, rerank in plan:
            name = system_name(base, beam, config.headline_beam, rerank, task)
            if rerank:
                runs[name] = run_or_reuse(name, {**key, "beam": beam, "rerank": True}, lambda: decode_system(
                    translator, name, sources, task, beam, True, knn, config, pool))
            else:
                runs[name] = without_rerank(runs[system_name(base, beam, config.headline_beam, True, task)], name,
                                            translator.tokenizer)
                cache.save(task, runs[name], {**rows_key, **key, "beam": beam, "rerank": False}, sources, references)

    run_plan("model", {"system": "model"}, None)
    if not config.knn:
        return _model_only_part(config, task, test, sources, references, runs, plan, caption_scorer, train)

    # the datastores: built where missing, the full one tuned if untuned (in a child process)
    prepared = prepared or run_prepare(config, model_dir, task)
    store, store_info = describe_store(config, task, 1.0, prepared)
    check_store_model(store, translator)
    knn_info = knn_record(store, prepared)
    params = store.knn_params
    translator.preload_retrieval(store, params.pairs)  # before the clock starts
    store_key = {"store_entries": store.count, "store_fp": store.meta.get("model", {}).get("fingerprint"),
                 "k": params.k, "lambda": params.lambda_, "temperature": params.temperature,
                 "index": store.meta.get("index", {}).get("factory")}
    if params.pairs:  # (absent for whole-store runs: their cached predictions stay valid)
        store_key["pairs"] = params.pairs

    run_plan("model+knn", {"system": "model+knn", **store_key}, KNNSettings(store, params.k, params.lambda_,
                                                                             params.temperature, pairs=params.pairs or 0))

    # λ sweep on dev (the plot of quality against λ)
    train_sources = {source_and_target(r["smiles"], r["description"], task)[0] for r in train}
    sweep = lambda_sweep(config, translator, store, task, splits.dev, train_sources)

    # datastore scaling: fractions of the training pairs, the model and λ, k, T fixed
    scaling_beam = config.scaling_beam or min(config.beams)
    scaling_rows = min(len(sources), config.scaling_limit or len(sources))
    scaling_runs: dict[float, tuple[SystemRun, dict]] = {}
    for fraction in sorted(set(config.fractions)):
        if fraction == 1.0:
            continue
        f_store, f_info = describe_store(config, task, fraction, prepared)
        check_store_model(f_store, translator)
        translator.preload_retrieval(f_store, params.pairs)
        name = system_name(f"model+knn[{round(fraction * 100):g}%]", scaling_beam, config.headline_beam, True, task)
        knn = KNNSettings(f_store, params.k, params.lambda_, params.temperature, pairs=params.pairs or 0)
        key = {"system": "model+knn", "beam": scaling_beam, "rerank": True, **store_key,
               "store_entries": f_store.count, "fraction": fraction}
        scaling_runs[fraction] = (run_or_reuse(name, key, lambda: decode_system(
            translator, name, sources[:scaling_rows], task, scaling_beam, True, knn, config, pool),
            rows=scaling_rows), f_info)

    # scores (the per-row forms must reproduce the evaluator's numbers)
    results, row_scores, signature = _scores(config, task, references, runs, caption_scorer)

    systems = {}
    for name, run in runs.items():
        systems[name] = {"settings": run.settings, "metrics": results[name].metrics, "notes": results[name].notes,
                         "speed": run.speed, "flags": run.flags, "memory": run.memory}

    comparisons = []
    for beam, rerank in plan:
        knn_name = system_name("model+knn", beam, config.headline_beam, rerank, task)
        model_name = system_name("model", beam, config.headline_beam, rerank, task)
        for metric in HEADLINE_METRICS[task]:
            c = paired_bootstrap(row_scores[knn_name], row_scores[model_name], metric, config.bootstrap, config.seed)
            comparisons.append({"system": knn_name, "baseline": model_name, **c})
    for metric in HEADLINE_METRICS[task]:
        for system in ("model+knn", "model"):
            c = paired_bootstrap(row_scores[system], row_scores["retrieval"], metric, config.bootstrap, config.seed)
            comparisons.append({"system": system, "baseline": "retrieval", **c})

    # scaling table: 100% is the main kNN run at the scaling beam; all points on the first scaling_rows rows
    scaling_points = []
    model_at_beam = system_name("model", scaling_beam, config.headline_beam, True, task)
    full_name = system_name("model+knn", scaling_beam, config.headline_beam, True, task)
    base_rows = row_scores[model_at_beam].head(scaling_rows)
    for fraction in sorted(set(config.fractions) | {1.0}):
        if fraction == 1.0:
            run, info, rs = runs[full_name], store_info, row_scores[full_name].head(scaling_rows)
            metrics = {m: rs.corpus(m) for m in HEADLINE_METRICS[task]}
        elif fraction in scaling_runs:
            run, info = scaling_runs[fraction]
            rs = (text2mol_row_scores(references[:scaling_rows], run.outputs) if task == TEXT2MOL
                  else caption_scorer(references[:scaling_rows], run.outputs))  # type: ignore[misc]
            metrics = {m: rs.corpus(m) for m in HEADLINE_METRICS[task]}
        else:
            continue
        gain = {m: paired_bootstrap(rs, base_rows, m, config.bootstrap, config.seed)
                for m in HEADLINE_METRICS[task]}
        scaling_points.append({
            "fraction": fraction, "system": run.name, "rows": info.get("rows"), "entries": info["entries"],
            "bytes_on_disk": info["bytes_on_disk"], "build_seconds": info["build_seconds"],
            "build_seconds_recorded": info["build_seconds_recorded"], "metrics": metrics,
            "gain_over_model": {m: {"delta": g["delta"], "ci95": g["ci95"], "excludes_zero": g["excludes_zero"]}
                                for m, g in gain.items()},
            "speed": run.speed})

    # examples (and the neighbours behind a few changed outputs)
    picks = pick_examples(task, row_scores, runs, config.examples)
    examples = {"primary_metric": PRIMARY_METRIC[task], "groups": []}
    titles = {"best": "Best rows of model + kNN", "worst": "Worst rows of model + kNN",
              "changed": "Rows where retrieval changed the output most"}
    for group in ("best", "worst", "changed"):
        group_rows = example_rows(task, picks[group], test, sources, references, runs, row_scores, train)
        if group == "changed":
            for row in group_rows:
                row["retrieval_trace"] = trace_neighbours(translator, store, task, row["source"], train, params, config)
        examples["groups"].append({"key": group, "title": titles[group], "rows": group_rows})

    part = {
        "rows": len(sources),
        "changed_outputs": sum(a != b for a, b in zip(runs["model+knn"].outputs, runs["model"].outputs)),
        "headline_beam": config.headline_beam,
        "headline_metrics": list(HEADLINE_METRICS[task]),
        "signature": signature,
        "systems": systems,
        "comparisons": comparisons,
        "datastore": {**store_info, "knn": knn_info},
        "lambda_sweep": sweep,
        "scaling": {"beam": scaling_beam, "rows": scaling_rows,
                    "baselines": {name: {m: row_scores[name].head(scaling_rows).corpus(m) for m in HEADLINE_METRICS[task]}
                                  for name in (model_at_beam, "retrieval")},
                    "knn": {"k": params.k, "lambda": params.lambda_, "temperature": params.temperature,
                            "pairs": params.pairs or 0},
                    "note": "λ, k, T tuned on the full store, reused for the smaller ones", "points": scaling_points},
        "cost": cost_summary(systems, store_info, sorted(config.beams), config.headline_beam, task),
    }
    return _clean(part), _clean(examples)


def _scores(config: BenchConfig, task: str, references: Sequence[str], runs: dict[str, SystemRun],
            caption_scorer: CaptionScorer | None) -> tuple[dict, dict, Any]:
    """(evaluator results, per-row scores, signature) of every run; the per-row forms must reproduce the
    evaluator's corpus numbers."""
    results: dict[str, Any] = {}
    signature = None
    for name, run in runs.items():
        result = _evaluate(task, references, run.outputs, fcd=config.fcd)
        signature = signature or result.signature
        results[name] = result
    row_scores = {name: (text2mol_row_scores(references, run.outputs) if task == TEXT2MOL
                         else caption_scorer(references, run.outputs))  # type: ignore[misc]
                  for name, run in runs.items()}
    for name, rs in row_scores.items():
        for metric in HEADLINE_METRICS[task]:
            a, b = rs.corpus(metric), results[name].metrics.get(metric)
            if b is not None and not (math.isnan(a) and math.isnan(b)) and abs(a - b) > 1e-9:
                raise AssertionError(f"bench: per-row {metric} of {name} is {a} but the evaluator says {b}")
    return results, row_scores, signature


def _model_only_part(config: BenchConfig, task: str, test: Sequence[dict], sources: Sequence[str],
                     references: Sequence[str], runs: dict[str, SystemRun], plan: list, caption_scorer: Any,
                     train: Sequence[dict]) -> tuple[dict, dict]:
    """bench.json's part of a task benched without kNN (``--no-knn``): the model at every beam against the
    retrieval baseline, with paired-bootstrap intervals, speed and memory."""
    results, row_scores, signature = _scores(config, task, references, runs, caption_scorer)
    systems = {name: {"settings": run.settings, "metrics": results[name].metrics, "notes": results[name].notes,
                      "speed": run.speed, "flags": run.flags, "memory": run.memory} for name, run in runs.items()}
    comparisons = []
    for beam, rerank in plan:
        name = system_name("model", beam, config.headline_beam, rerank, task)
        for metric in dict.fromkeys((*HEADLINE_METRICS[task], *VERSUS_RETRIEVAL[task])):
            c = paired_bootstrap(row_scores[name], row_scores["retrieval"], metric, config.bootstrap, config.seed)
            comparisons.append({"system": name, "baseline": "retrieval", **c})
    picks = pick_examples(task, row_scores, runs, config.examples)
    titles = {"best": "Best rows of the model", "worst": "Worst rows of the model"}
    examples = {"primary_metric": PRIMARY_METRIC[task], "groups": [
        {"key": g, "title": titles[g], "rows": example_rows(task, picks[g], test, sources, references, runs, row_scores, train)}
        for g in ("best", "worst")]}
    part = {"rows": len(sources), "headline_beam": config.headline_beam, "headline_metrics": list(HEADLINE_METRICS[task]),
            "signature": signature, "systems": systems, "comparisons": comparisons, "datastore": None,
            "lambda_sweep": None, "scaling": None,
            "cost": cost_summary(systems, None, sorted(config.beams), config.headline_beam, task)}
    return _clean(part), _clean(examples)


def cost_summary(systems: dict, store_info: dict | None, beams: Sequence[int], headline_beam: int, task: str) -> dict:
    """Decoding speed with and without kNN at each beam, and what the datastore costs."""
    speeds = []
    for beam in beams:
        m = systems.get(system_name("model", beam, headline_beam, True, task))
        k = systems.get(system_name("model+knn", beam, headline_beam, True, task))
        if not m:
            continue
        ms, ks = m["speed"], (k or {}).get("speed", {"molecules_per_s": None, "tokens_per_s": None})
        slowdown = (ms["molecules_per_s"] / ks["molecules_per_s"]) if ms["molecules_per_s"] and ks["molecules_per_s"] else None
        speeds.append({"beam": beam, "model_molecules_per_s": ms["molecules_per_s"],
                       "knn_molecules_per_s": ks["molecules_per_s"], "model_tokens_per_s": ms["tokens_per_s"],
                       "knn_tokens_per_s": ks["tokens_per_s"],
                       "knn_time_ratio": round(slowdown, 3) if slowdown else None})
    if store_info is None:
        return {"decoding": speeds, "peak_rss_mb": peak_rss_mb()}
    return {"decoding": speeds, "datastore_entries": store_info["entries"],
            "datastore_bytes": store_info["bytes_on_disk"], "datastore_build_seconds": store_info["build_seconds"],
            "datastore_build_seconds_recorded": store_info["build_seconds_recorded"],
            "build_peak_rss_mb": store_info.get("build_peak_rss_mb"), "peak_rss_mb": peak_rss_mb()}


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the whole benchmark and write its outputs into ``config.out``; returns the bench.json dict."""
    from rdkit import RDLogger

    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    # RDKit explains every unparsable candidate on stderr; thousands of them would bury the bench's progress
    RDLogger.DisableLog("rdApp.*")
    try:
        return _run_bench(config, started)
    finally:
        RDLogger.EnableLog("rdApp.*")


def _run_bench(config: BenchConfig, started: float) -> dict[str, Any]:
    import torch

    from t2m.generate import Translator
    from datastore.store import model_fingerprint
    from t2m.modeling import default_model_dir

    model_dir = Path(config.model) if config.model is not None else default_model_dir()
    translator = Translator.from_pretrained(model_dir, allow_pickle=config.allow_pickle)
    # the datastores' own fingerprint, so bench.json's model and each store's model compare directly
    model_fp = model_fingerprint(translator.model)["fingerprint"]
    splits = _dev_records(config)
    caption_scorer = CaptionScorer() if MOL2TEXT in config.tasks else None
    cache = PredictionCache(config.out / "predictions", enabled=not config.fresh)

    bench: dict[str, Any] = {
        "format": "t2m-bench", "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": config.to_json(),
        "model": {"path": str(model_dir), "fingerprint": model_fp, "prompt_style": translator.info.prompt_style,
                  "parameters": sum(p.numel() for p in translator.model.parameters())},
        "data": {"setting": splits.setting, "dir": str(splits.data_dir), "sources": splits.sources,
                 "train_rows": len(splits.train), "dev_rows": len(splits.dev), "test_rows": len(splits.test),
                 "test_rows_used": min(len(splits.test), config.limit or len(splits.test)),
                 "dev_size": config.dev_size},
        "machine": machine_info(torch),
        "signature": {},
        "tasks": {},
    }
    examples: dict[str, Any] = {"tasks": {}}
    prepared: dict[str, dict[str, Any]] = {}
    if config.jobs > 1 and config.knn:
        prepared = prepare_in_parallel(config, model_dir)
    for task in config.tasks:
        with task_decode_pool(config, model_dir, task) as pool:
            if pool is not None:
                bench["machine"]["decode_workers"] = {"processes": pool.jobs, "threads_each": pool.threads}
            part, task_examples = run_task(config, task, translator, model_dir, splits, caption_scorer, cache, model_fp,
                                           prepared.get(task), pool)
            bench["tasks"][task] = part
            bench["signature"][task] = part["signature"]
            examples["tasks"][task] = task_examples
            bench["peak_rss_mb"] = peak_rss_mb()
            write_json_atomic(config.out / "bench.json", bench)  # partial results survive a later failure
    bench["verdict"] = verdicts(bench)
    bench["seconds"] = round(time.perf_counter() - started, 1)
    bench["peak_rss_mb"] = peak_rss_mb()
    write_outputs(config.out, bench, examples)
    return bench


def task_decode_pool(config: BenchConfig, model_dir: Path, task: str) -> Any:
    """With ``config.jobs`` > 1, a :class:`t2m.decode_pool.DecodePool` whose workers hold the model and
    ``task``'s datastores (a context manager); else a context that gives None."""
    if config.jobs < 2:
        return contextlib.nullcontext(None)
    from t2m.decode_pool import DecodePool

    stores = [store_path(config, task, f) for f in sorted(set(config.fractions) | {1.0})] if config.knn else []
    return DecodePool(model_dir, config.jobs, allow_pickle=config.allow_pickle, stores=stores)


def prepare_in_parallel(config: BenchConfig, model_dir: Path) -> dict[str, dict[str, Any]]:
    """:func:`prepare_task_stores` of every task at once, each in its own spawned process with an equal
    share of the CPUs (at most ``config.jobs`` processes). Returns {task: its record}."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from t2m.decode_pool import cpu_count, use_threads

    workers = max(1, min(config.jobs, len(config.tasks)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=use_threads, initargs=(max(1, cpu_count() // workers),)) as pool:
        futures = {task: pool.submit(prepare_task_stores, config, model_dir, task) for task in config.tasks}
        return {task: {**future.result(), "process": "child process"} for task, future in futures.items()}


def write_outputs(out: Path, bench: dict[str, Any], examples: dict[str, Any]) -> dict[str, Path]:
    """bench.json, examples.json, bench.md, plots/*.png and report.html in ``out``."""
    from t2m.plots import make_plots
    from t2m.report import bench_markdown, write_report

    write_json_atomic(out / "bench.json", bench)
    write_json_atomic(out / "examples.json", examples)
    plots = make_plots(bench, out / "plots")
    atomic_write_text(out / "bench.md", bench_markdown(bench, list(plots)))
    report = write_report(out)
    return {"bench.json": out / "bench.json", "bench.md": out / "bench.md", "report.html": report, **plots}


def machine_info(torch: Any) -> dict[str, Any]:
    from evaluation.signature import package_version

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "versions": {name: package_version(name) for name in ("t2m", "torch", "transformers", "faiss-cpu",
                                                                   "rdkit", "numpy")}}


# -------------------------------------------------------------------------------------------- CLI


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=None, help="ChEBI-20 folder (default: where t2m finds it)")
    parser.add_argument("--setting", default="auto", choices=SETTINGS)
    parser.add_argument("--dev-size", type=int, default=None, help="rows in the dev slice (benchmark setting; default 300)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default: %(default)s)")
    parser.add_argument("--tasks", default="text2mol,mol2text", help="comma list (default: %(default)s)")
    parser.add_argument("--beams", default="1,5", help="beam sizes; the largest is the headline (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N test rows")
    parser.add_argument("--dev-limit", type=int, default=None, help="use the first N dev rows for tuning and the λ sweep")
    parser.add_argument("--fractions", default="0.25,0.5,1.0", help="datastore sizes as fractions of the training pairs")
    parser.add_argument("--scaling-beam", type=int, default=None, help="beam for the datastore-size runs (default: the smallest of --beams)")
    parser.add_argument("--scaling-limit", type=int, default=1000,
                        help="test rows (the first N) of the datastore-size runs (default: %(default)s; 0: all)")
    parser.add_argument("--store-dir", type=Path, default=None, help="datastores per task (default: OUT/stores)")
    parser.add_argument("--index", default=None, help="faiss factory for stores built here (default: the datastore default)")
    parser.add_argument("--pairs", default="0", help="retrieval scopes the tuning of a new store tries, comma list: 0 = the "
                        "whole store, N = each input's N nearest training pairs (SK-MT) (default: %(default)s)")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (ChemNet) in the text2mol metrics")
    parser.add_argument("--no-knn", action="store_true",
                        help="bench the model and the retrieval baseline only: no datastores, tuning, λ sweep or "
                             "datastore-size runs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (default: %(default)s)")
    parser.add_argument("--lambda-sweep", default=",".join(map(str, SWEEP_LAMBDAS)), help="λ values of the dev sweep plot")
    parser.add_argument("--sweep-rows", type=int, default=60, help="dev rows decoded per λ of the sweep (0: likelihood only)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs per batch everywhere (default: decoding 32 greedy and 64 beam search, "
                             "builds and tuning 32)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="decoding option for every model system (with and without kNN); default: the "
                             "model's recommendation per task (t2m.json \"decoding\"), 1 = off")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None,
                        help="decoding option for every model system (with and without kNN); default: the "
                             "model's recommendation per task, 0 = off")
    parser.add_argument("--examples", type=int, default=3, help="best / worst / changed rows per task in the report")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--fresh", action="store_true", help="decode again even where cached predictions match")
    parser.add_argument("--in-process", action="store_true",
                        help="build and tune datastores in the bench process (default: a child process, so that "
                             "their peak memory is measured apart from decoding's)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow a checkpoint with pickled weights")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, each with an equal share of the CPUs: the tasks' datastores are "
                             "built and tuned at once, and every decoding is split over them (speeds are then "
                             "of all of them together; default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        out=args.out, model=args.model, data=args.data, setting=args.setting, dev_size=args.dev_size,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), beams=_ints(args.beams),
        limit=args.limit, dev_limit=args.dev_limit, fractions=_floats(args.fractions), scaling_beam=args.scaling_beam,
        scaling_limit=args.scaling_limit or None,
        store_dir=args.store_dir, index=args.index, pairs=_ints(args.pairs), fcd=not args.no_fcd, bootstrap=args.bootstrap,
        lambda_sweep=_floats(args.lambda_sweep), sweep_rows=args.sweep_rows, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, examples=args.examples, seed=args.seed, fresh=args.fresh,
        isolate_builds=not args.in_process, allow_pickle=args.allow_pickle, progress=not args.no_progress,
        jobs=args.jobs, knn=not args.no_knn)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"t2m bench: error: {error}", file=sys.stderr)
        return 2
    bench = run_bench(config)
    print((config.out / "bench.md").read_text(encoding="utf-8"))
    print(f"t2m bench: wrote {config.out / 'bench.json'}, bench.md, plots/, report.html in {bench['seconds']} s "
          f"(peak memory {bench['peak_rss_mb']} MB)")
    return 0
