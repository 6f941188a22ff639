"""The bench's datastores: built where missing (the full store with the model, the smaller ones cut from
it), tuned on the dev slice when untuned -- in a child process, so that their peak memory is measured apart
from decoding's -- described (entries, bytes, build time), and the λ sweep on the dev slice."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

# datastore builds, tuning and the λ sweep batch as `t2m datastore build` does (decoding: t2m.options.default_batch_size)
from datastore.params import KNNParams
from datastore.store import Datastore, DatastoreMismatchError
from t2m.bench.config import BenchConfig
from t2m.bench.systems import effective_decoding_options
from t2m.decoding.batching import DEFAULT_BATCH_SIZE, encode_batch
from t2m.knn.store import build_task_datastore, subset_task_datastore
from t2m.knn.tune import decode, dev_metric, retrieval_scopes, teacher_forced_scores, tune
from t2m.process_memory import peak_rss_mb
from t2m.tasks import source_and_target


def folder_bytes(path: Path) -> int:
    """Total size of the files directly and indirectly inside ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def store_path(config: BenchConfig, task: str, fraction: float) -> Path:
    root = config.store_dir if config.store_dir is not None else config.out / "stores"
    return Path(root) / (task if fraction == 1.0 else f"{task}-{round(fraction * 100):g}pct")


def prepare_task_stores(config: BenchConfig, model_dir: Path, task: str) -> dict[str, Any]:
    """Build every missing datastore of ``task`` -- all the training pairs with the model, each of
    ``config.fractions`` cut from that one (:func:`t2m.knn.store.subset_task_datastore`: the same
    entries, no model run) -- and tune the full one on the dev slice (``t2m tune``) when it has only
    default λ, k, T. Returns the seconds each step took here and this process's peak memory; meant to
    run in a child process (:func:`run_prepare`), so that its memory is measured apart from decoding's."""
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
    path = store_path(config, task, fraction)
    store = Datastore.load(path)
    data_meta = store.meta.get("data", {})
    if store.task != task:
        raise ValueError(f"{path}/datastore.json: a {store.task} store where the {task} store belongs; "
                         "pass another store_dir=DIR or delete this folder")
    if abs(float(data_meta.get("fraction", 1.0)) - fraction) > 1e-9:
        raise ValueError(f"{path}/datastore.json: built from {data_meta.get('fraction')} of the training pairs, "
                         f"not {fraction}; pass another store_dir=DIR or delete this folder")
    if config.dev_size is not None and data_meta.get("dev_size") not in (None, config.dev_size):
        raise ValueError(f"{path}/datastore.json: built with dev size {data_meta.get('dev_size')}, not "
                         f"{config.dev_size}; its training pairs differ: pass another store_dir=DIR or delete it")
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
    try:
        store.check_matches(model=translator.model, tokenizer=translator.tokenizer)
    except DatastoreMismatchError as error:
        raise DatastoreMismatchError(f"{error}\nbench: pass another store_dir=DIR (or delete {store.path}) so that "
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
    the reference tokens for every λ of ``config.knn_lambdas`` (one pass), and, on ``config.sweep_rows``
    dev rows, the task metric of greedy decoding at each λ."""
    from datastore.build import PairBatches

    params = store.knn_params
    pairs = [source_and_target(r["smiles"], r["description"], task) for r in dev]
    pairs = [p for p in pairs if p[0] not in train_sources]
    if config.dev_limit:
        pairs = pairs[: config.dev_limit]
    sweep = {"k": params.k, "temperature": params.temperature, "pairs": params.pairs or 0, "tuned_lambda": params.lambda_,
             "dev_rows": len(pairs), "decoded_rows": 0, "points": []}
    if not pairs or not config.knn_lambdas:
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
    grid = [KNNParams(params.k, float(lambda_), params.temperature, scope) for lambda_ in config.knn_lambdas]
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

