"""Translate one list of inputs in several worker processes at once: ``DecodePool`` (``t2m bench --jobs N``,
``t2m translate --jobs N``).

Each worker is a spawned process with its own copy of the checkpoint and of the datastores named when
the pool starts, and ``threads`` torch and FAISS threads. A call's rows are cut into interleaved chunks
(rows i, i + C, i + 2C, ...: every chunk gets a like mix of short and long inputs), a few per worker,
which the workers take as they become free, so that no worker idles while another has a long chunk left.
An input's result does not depend on the rows it is batched with, so the merged outputs are the ones a
single process gives. The workers start (model and stores loaded) when the pool does; a call's time is
its wall time in the calling process, one-off costs of the first ``generate`` calls included.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from datastore.store import Datastore
from t2m.decoding.translator import Translator
from t2m.process_memory import peak_rss_mb

# The worker process's loaded checkpoint and datastores, set by _start_worker. Module state because a
# ProcessPoolExecutor initializer has nowhere else to leave it; it exists only in worker processes.
_WORKER: dict[str, Any] = {}
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


@dataclass
class PoolResult:
    """The merged translations of one call, its wall time, the seconds the workers spent on its chunks
    and their peak memory."""

    translations: list
    seconds: float
    chunk_seconds: list[float]
    worker_peak_rss_mb: dict[int, float]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_threads(threads: int) -> None:
    """Run this process's torch on ``threads`` threads (a process pool's initializer: it must run before
    torch starts its OpenMP pool)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Leave this worker process when its parent is gone: a killed parent (Ctrl-C twice, ``kill``) would
    otherwise leave it decoding its current chunk to the end, for minutes, on cores the next run needs."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(model_dir: str, allow_pickle: bool, threads: int, stores: tuple[str, ...],
                  prompt_style: str | None = None, database: str | None = None) -> None:
    import logging
    import signal

    # Ctrl-C is the parent's to handle (it keeps the finished rows and ends the pool): a worker that took
    # it too would print its own traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(os.getppid())
    use_threads(threads)
    # a chunk's bad-input warnings would name rows of the chunk, not of the call: the caller reports the
    # flags each result carries, by its own row numbers
    logging.getLogger("t2m.decoding.translator").setLevel(logging.ERROR)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass

    translator = Translator.from_pretrained(model_dir, allow_pickle=allow_pickle, prompt_style=prompt_style,
                                            database=database)
    if translator.database is not None:  # the neighbour search, built before any call's clock starts
        translator.database.prepare()
    _WORKER["translator"] = translator
    _WORKER["stores"] = {}
    for store in stores:  # read before any call's clock starts
        _load_store(store)


def _load_store(path: str) -> Any:
    stores = _WORKER["stores"]
    if path not in stores:
        translator = _WORKER["translator"]
        store = Datastore.load(path, model=translator.model, tokenizer=translator.tokenizer)
        translator.preload_retrieval(store, store.knn_params.pairs)  # the store's default scope
        stores[path] = store
    return stores[path]


def _worker_pid(wait: float) -> int:
    time.sleep(wait)  # long enough for the other workers to finish starting and take their own call
    return os.getpid()


def _worker_retrieval(retrieval: Any) -> Any:
    """The call's retrieval options with the store this worker loaded for their folder."""
    import dataclasses

    return None if retrieval is None else dataclasses.replace(retrieval, store=_load_store(retrieval.store))


def _translate_chunk(sources: list[str], task: str, decoding: Any, constraints: Any, retrieval: Any
                     ) -> tuple[list, float, int, float]:
    started = time.perf_counter()
    results = _WORKER["translator"].translate(sources, task, decoding, constraints, _worker_retrieval(retrieval))
    return results, time.perf_counter() - started, os.getpid(), peak_rss_mb()


class DecodePool:
    """``jobs`` worker processes holding the checkpoint in ``model_dir`` (and the datastores in ``stores``);
    :meth:`translate` splits a call's inputs across them. Use as a context manager (the workers end with it).
    Bad-input warnings are not logged by the workers (their row numbers would be a chunk's): each
    translation's ``flags`` say what happened to it."""

    def __init__(self, model_dir: str | Path, jobs: int, allow_pickle: bool = False, threads: int | None = None,
                 stores: Sequence[str | Path] = (), chunks_per_worker: int = 4, prompt_style: str | None = None,
                 database: str | Path | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if jobs < 2:
            raise ValueError(f"a DecodePool needs at least 2 workers, got {jobs}")
        import sys

        # workers ended by Ctrl-C (close(kill=True)) leave the call queue's semaphores to the resource tracker
        # (a process started with this one's -W flags), which would warn about them after the one-line message
        if _TRACKER_QUIET not in sys.warnoptions:
            sys.warnoptions.append(_TRACKER_QUIET)
        self.jobs = jobs
        self.threads = threads or max(1, cpu_count() // jobs)
        self.chunks_per_worker = chunks_per_worker
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker,
                                         initargs=(str(model_dir), allow_pickle, self.threads,
                                                   tuple(str(s) for s in stores), prompt_style,
                                                   None if database is None else str(database)))
        try:
            self._start_all()
        except BaseException:  # a worker that cannot load the model or a store: no processes left behind
            self.close()
            raise

    def _start_all(self, tries: int = 5) -> None:
        """Start every worker now (loading the model and stores), so that no call's time includes it."""
        seen: set[int] = set()
        for _ in range(tries):
            seen |= {f.result() for f in [self._pool.submit(_worker_pid, 0.5) for _ in range(self.jobs)]}
            if len(seen) >= self.jobs:
                return

    def translate(self, inputs: Sequence[str], task: str, decoding: Any = None, constraints: Any = None,
                  retrieval: Any = None, *, progress: bool = False, chunk_size: int | None = None,
                  on_chunk: Callable[[list[int], list], None] | None = None) -> PoolResult:
        """``Translator.translate(inputs, task, decoding, constraints, retrieval)`` split over the workers
        (the store of ``retrieval`` goes to them as a folder, which each loaded when the pool started or
        loads on first use). ``progress`` shows a bar of the inputs
        translated (it moves a chunk at a time). ``chunk_size``: about this many inputs per chunk (default:
        ``chunks_per_worker`` chunks per worker); ``on_chunk(rows, results)`` is called with each chunk's rows
        (indices into ``inputs``) and results as it finishes (``t2m translate`` keeps them, so that an
        interrupted run resumes)."""
        from tqdm.auto import tqdm

        retrieval = None if retrieval is None else retrieval.by_value()
        inputs = list(inputs)
        count = max(1, min(len(inputs), self.jobs * self.chunks_per_worker))
        if chunk_size:
            count = max(count, -(-len(inputs) // chunk_size))
        chunks = [rows for rows in (list(range(i, len(inputs), count)) for i in range(count)) if rows]
        merged: list = [None] * len(inputs)
        chunk_seconds: list[float] = []
        peaks: dict[int, float] = {}
        started = time.perf_counter()
        futures = {self._pool.submit(_translate_chunk, [inputs[r] for r in rows], task, decoding, constraints,
                                     retrieval): rows for rows in chunks}
        bar = tqdm(total=len(inputs), desc=f"translate ({self.jobs} workers)", disable=not progress,
                   dynamic_ncols=True)
        for future in as_completed(futures):
            results, seconds, pid, peak = future.result()
            bar.update(len(results))
            for row, result in zip(futures[future], results):
                merged[row] = result
            if on_chunk is not None:
                on_chunk(futures[future], results)
            chunk_seconds.append(round(seconds, 3))
            peaks[pid] = max(peak, peaks.get(pid, 0.0))
        bar.close()
        return PoolResult(merged, time.perf_counter() - started, chunk_seconds, peaks)

    def close(self, kill: bool = False) -> None:
        """End the workers: after their current chunk, or at once with ``kill`` (an interrupted call)."""
        if kill:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(kill=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))
