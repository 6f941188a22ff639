"""Run chunks of work on forked single-process "lanes" that can be added while the work runs.

Why not one process pool: FCD needs torch (1.4 s to import) in the processes that run ChemNet, and RDKit
work should start at once. So the first lane is forked at the start and begins the RDKit chunks while the
main process imports torch; the second lane is forked after that import and inherits it. Both lanes pull
chunks from one queue (fed by a thread of the main process), so neither idles while work remains.
Fork-only (Linux, macOS with care); where fork is unavailable, :func:`fork_lane` returns None and callers
compute in-process.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

PARALLEL_MIN_ROWS = 400  # below this, forking workers costs more than it saves


def default_workers() -> int:
    """Worker processes by default: up to 2 (the cores of the target machine)."""
    return max(1, min(2, os.cpu_count() or 1))


def fork_lane() -> ProcessPoolExecutor | None:
    """A one-process executor whose process is forked on first submit; None where fork is unavailable."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        return None
    return ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("fork"))


class ChunkFeeder:
    """Feeds ``fn(*args)`` for each args tuple in ``chunks`` to lanes, at most ``depth`` in flight per lane."""

    def __init__(self, fn: Callable, chunks: Sequence[tuple], depth: int = 2):
        self._fn = fn
        self._chunks = chunks
        self._depth = depth
        self._pending = deque(range(len(chunks)))
        self._results: list = [None] * len(chunks)
        self._lanes: list[ProcessPoolExecutor] = []
        self._inflight: dict[Future, tuple[int, ProcessPoolExecutor]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="t2m-chunk-feeder", daemon=True)
        self._thread.start()

    def add_lane(self, lane: ProcessPoolExecutor) -> None:
        """Start feeding ``lane``. Its process is forked here, in the calling thread, at a known point."""
        with self._lock:
            self._lanes.append(lane)
        self._fill()
        self._wake.set()

    def _fill(self) -> None:
        with self._lock:  # called by add_lane (caller's thread) and by the feeder thread
            for lane in self._lanes:
                busy = sum(1 for _, owner in self._inflight.values() if owner is lane)
                while busy < self._depth and self._pending:
                    i = self._pending.popleft()
                    self._inflight[lane.submit(self._fn, *self._chunks[i])] = (i, lane)
                    busy += 1

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if not (self._pending or self._inflight or not self._lanes):
                        return
                    inflight = list(self._inflight)
                if not inflight:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    self._fill()
                    continue
                done, _ = wait(inflight, timeout=0.05, return_when=FIRST_COMPLETED)
                with self._lock:
                    for f in done:
                        i, _ = self._inflight.pop(f)
                        self._results[i] = f.result()
                self._fill()
        except BaseException as e:  # re-raised in results()
            self._error = e

    def results(self) -> list:
        """Block until every chunk is done; results in chunk order. Re-raises a worker's exception."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._results
