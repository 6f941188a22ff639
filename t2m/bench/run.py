"""The whole bench: :func:`run_bench` loads the model and the data, runs every task (:func:`t2m.bench.task.run_task`),
optionally with the tasks' datastores prepared at once and every decoding split over worker processes, and
writes ``bench.json``, ``examples.json``, ``bench.md``, ``plots/*.png`` and ``report.html``."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from datastore.store import model_fingerprint
from evaluation.signature import package_version
from t2m.bench.cache import PredictionCache, write_json_atomic
from t2m.bench.config import BenchConfig, command_line
from t2m.bench.published import find_published_dir
from t2m.bench.statistics import CaptionScorer
from t2m.bench.stores import prepare_task_stores, store_path
from t2m.bench.task import run_task
from t2m.bench.verdicts import verdicts
from t2m.chem import quiet
from t2m.data import DEV_SIZE, load_chebi20_records
from t2m.decoding.pool import DecodePool, cpu_count, use_threads
from t2m.decoding.translator import Translator
from t2m.io import atomic_write_text
from t2m.model.checkpoint import default_model_dir
from t2m.plots import make_plots
from t2m.process_memory import peak_rss_mb
from t2m.report import bench_markdown, write_report
from t2m.tasks import MOL2TEXT


def _dev_records(config: BenchConfig):
    return load_chebi20_records(config.data, config.setting, dev_size=config.dev_size if config.dev_size is not None else DEV_SIZE)


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the whole benchmark and write its outputs into ``config.out``; returns the bench.json dict."""
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    # RDKit explains every unparsable candidate on stderr; thousands of them would bury the bench's progress
    with quiet():
        return _run_bench(config, started)


def _run_bench(config: BenchConfig, started: float) -> dict[str, Any]:
    import torch

    model_dir = Path(config.model) if config.model is not None else default_model_dir()
    translator = Translator.from_pretrained(model_dir, allow_pickle=config.allow_pickle)
    # the datastores' own fingerprint, so bench.json's model and each store's model compare directly
    model_fp = model_fingerprint(translator.model)["fingerprint"]
    splits = _dev_records(config)
    published = find_published_dir(config.published, splits.data_dir) if config.compare_published else None
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
                 "dev_size": config.dev_size, "files_sha256": dict(splits.files),
                 "published_predictions": str(published) if published else None},
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
                                           prepared.get(task), pool, published)
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
    """With ``config.jobs`` > 1, a :class:`t2m.decoding.pool.DecodePool` whose workers hold the model and
    ``task``'s datastores (a context manager); else a context that gives None."""
    if config.jobs < 2:
        return contextlib.nullcontext(None)

    stores = [store_path(config, task, f) for f in sorted(set(config.fractions) | {1.0})] if config.knn else []
    return DecodePool(model_dir, config.jobs, allow_pickle=config.allow_pickle, stores=stores)


def prepare_in_parallel(config: BenchConfig, model_dir: Path) -> dict[str, dict[str, Any]]:
    """:func:`prepare_task_stores` of every task at once, each in its own spawned process with an equal
    share of the CPUs (at most ``config.jobs`` processes). Returns {task: its record}."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(config.jobs, len(config.tasks)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=use_threads, initargs=(max(1, cpu_count() // workers),)) as pool:
        futures = {task: pool.submit(prepare_task_stores, config, model_dir, task) for task in config.tasks}
        return {task: {**future.result(), "process": "child process"} for task, future in futures.items()}


def write_outputs(out: Path, bench: dict[str, Any], examples: dict[str, Any]) -> dict[str, Path]:
    """bench.json, examples.json, bench.md, plots/*.png and report.html in ``out``."""
    write_json_atomic(out / "bench.json", bench)
    write_json_atomic(out / "examples.json", examples)
    plots = make_plots(bench, out / "plots")
    command = command_line(bench)
    atomic_write_text(out / "bench.md", bench_markdown(bench, command, list(plots)))
    report = write_report(out, command)
    return {"bench.json": out / "bench.json", "bench.md": out / "bench.md", "report.html": report, **plots}


def machine_info(torch: Any) -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "versions": {name: package_version(name) for name in ("t2m", "torch", "transformers", "faiss-cpu",
                                                                   "rdkit", "numpy")}}

