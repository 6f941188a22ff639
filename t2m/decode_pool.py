"""Translate one list of inputs in several worker processes at once: ``DecodePool`` (``t2m bench --jobs N``).

Each worker is a spawned process with its own copy of the checkpoint (and of every datastore it is
asked to use), ``threads`` torch and FAISS threads, and translates an interleaved shard of the rows
(rows i, i + N, i + 2N, ...: every shard gets a like mix of short and long inputs). An input's result
does not depend on the rows it is batched with, so the merged outputs are the ones a single process
gives; the time of a call is its slowest shard's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# The worker process's loaded checkpoint and datastores, set by _start_worker. Module state because a
# ProcessPoolExecutor initializer has nowhere else to leave it; it exists only in worker processes.
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class KNNSpec:
    """The kNN settings of one call, by value: the store's folder and its k, λ, T (workers load the store)."""

    store: str
    k: int
    lambda_: float
    temperature: float


@dataclass
class PoolResult:
    """The merged translations of one call, the seconds each shard took (warm-up excluded) and the
    workers' peak memory."""

    translations: list
    shard_seconds: list[float]
    worker_peak_rss_mb: list[float]

    @property
    def seconds(self) -> float:
        return max(self.shard_seconds) if self.shard_seconds else 0.0


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _start_worker(model_dir: str, allow_pickle: bool, threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    from rdkit import RDLogger

    from t2m.generate import Translator

    RDLogger.DisableLog("rdApp.*")  # unparsable candidates are counted, not printed
    _WORKER["translator"] = Translator.from_pretrained(model_dir, allow_pickle=allow_pickle)
    _WORKER["stores"] = {}


def _worker_knn(spec: KNNSpec | None) -> Any:
    from t2m.generate import KNNSettings

    if spec is None:
        return None
    stores = _WORKER["stores"]
    if spec.store not in stores:
        from datastore.store import Datastore

        translator = _WORKER["translator"]
        store = Datastore.load(spec.store, model=translator.model, tokenizer=translator.tokenizer)
        store.retriever()  # the index is read before any clock starts
        stores[spec.store] = store
    return KNNSettings(stores[spec.store], spec.k, spec.lambda_, spec.temperature)


def _translate_shard(sources: list[str], knn: KNNSpec | None, options: dict[str, Any], warm_up: int
                     ) -> tuple[list, float, float]:
    from t2m.bench import peak_rss_mb

    translator = _WORKER["translator"]
    settings = _worker_knn(knn)
    if warm_up:  # untimed: the first generate call of a configuration pays one-off costs
        translator.translate(sources[:warm_up], knn=settings, **options)
    started = time.perf_counter()
    results = translator.translate(sources, knn=settings, **options)
    return results, time.perf_counter() - started, peak_rss_mb()


class DecodePool:
    """``jobs`` worker processes holding the checkpoint in ``model_dir``; :meth:`translate` splits a
    call's inputs across them. Use as a context manager (the workers end with it)."""

    def __init__(self, model_dir: str | Path, jobs: int, allow_pickle: bool = False, threads: int | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if jobs < 2:
            raise ValueError(f"a DecodePool needs at least 2 workers, got {jobs}")
        self.jobs = jobs
        self.threads = threads or max(1, cpu_count() // jobs)
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker,
                                         initargs=(str(model_dir), allow_pickle, self.threads))

    def translate(self, inputs: Sequence[str], knn: KNNSpec | None = None, warm_up: int = 2,
                  **options: Any) -> PoolResult:
        """``Translator.translate(inputs, **options)`` (``knn`` by :class:`KNNSpec`) split over the
        workers; each shard first translates ``warm_up`` of its inputs untimed."""
        inputs = list(inputs)
        shards = [list(range(i, len(inputs), self.jobs)) for i in range(self.jobs)]
        shards = [rows for rows in shards if rows]
        futures = [self._pool.submit(_translate_shard, [inputs[r] for r in rows], knn, options, warm_up)
                   for rows in shards]
        merged: list = [None] * len(inputs)
        seconds, peaks = [], []
        for rows, future in zip(shards, futures):
            results, shard_seconds, peak = future.result()
            for row, result in zip(rows, results):
                merged[row] = result
            seconds.append(round(shard_seconds, 3))
            peaks.append(peak)
        return PoolResult(merged, seconds, peaks)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
