"""FAISS index over a store's keys: any ``index_factory`` string, L2 metric, GPU when there is one.

``"Flat"`` is exact search; ``"IVF<n>,Flat"``, ``"HNSW<m>"``, ``"IVF<n>,PQ<m>"``, ``"OPQ<m>,IVF<n>,PQ<m>"``
... are approximate. Indexes that need training are trained on a random sample of the keys. The index
is saved as ``index.faiss`` (``faiss.write_index``, a CPU index) in the store folder, with its search
parameters (``nprobe`` for IVF, ``efSearch`` for HNSW) in ``datastore.json``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

INDEX_FILE = "index.faiss"  # in the store folder (datastore.store re-exports it)

# Chosen by tests/benchmarks/bench_datastore.py on a 2-core CPU. First (contended by a training
# run) on the benchmark text2mol store of a partly trained cpu-small model (189k keys, d = 256), 1,600 dev
# decoder states as queries, 160 per step (batch 32 x beam 5), k = 16:
#   IVF1024,Flat nprobe 8:  recall@16 0.995, 36 ms/step, built in 11 s, 1,038 bytes/entry
#   HNSW32 efSearch 32/64:  recall@16 0.969/0.975, 38/52 ms/step, built in 29-35 s, 1,296 bytes/entry
#   Flat (exact):           4.0 s/step
# Beam-5 decoding with kNN through IVF1024 nprobe 8 wrote the same outputs as exact search (32/32);
# through HNSW32 only 22/32 were the same, and greedy dev Morgan FTS moved by 0.058 against exact search
# (IVF: 0.0009). Trained decoder states cluster, which suits IVF.
# Then on the shipped model's full mol2text store (259,646 keys), same queries (the IVF1024
# decoding ratios with the previous kNN mixing code, which renormalised blocked tokens over the vocabulary):
#   IVF1024,Flat nprobe 8:    recall@16 0.989, 31.6 ms/step, 1,036 bytes/entry; beam-5 decoding 1.50x
#   IVF1024,SQfp16 nprobe 8:  recall@16 0.989, 22.5 ms/step,   524 bytes/entry; beam-5 decoding 1.38x
#   IVF1024,SQfp16 nprobe 6:  recall@16 0.983, 18.8 ms/step,   524 bytes/entry; beam-5 decoding 1.29x
#   IVF1024,SQ8 nprobe 8:     recall@16 0.981, 21.9 ms/step,   268 bytes/entry; beam-5 decoding 1.31x
#   IVF1024,SQ8 nprobe 6:     recall@16 0.976, 17.3 ms/step,   268 bytes/entry
#   IVF2048,SQfp16 nprobe 8:  recall@16 0.985, 15.9 ms/step,   528 bytes/entry, built in 13 s
#   IVF2048,SQfp16 nprobe 10: recall@16 0.988, 16.6 ms/step,   528 bytes/entry; beam-5 decoding 1.22x
#   IVF2048,PQ64 nprobe 10:   recall@16 0.898, 21.2 ms/step,    81 bytes/entry, built in 114 s
#   IVF2048,PQ32 nprobe 10:   recall@16 0.803, 10.6 ms/step,    49 bytes/entry, built in 66 s
# and on its text2mol store (196,098 keys), IVF2048,SQfp16 nprobe 10: beam-5 decoding 1.17x; on 200 test
# rows at beam 5 with the tuned k, λ, T, 97.5% of outputs as with exact search and the same Morgan FTS
# (nprobe 8: 91%, +0.0052). (decoding: 64 dev rows, 48 tokens, against the model alone, one thread.)
# The store's keys are float16 already, so SQfp16 loses nothing against IVF-Flat (the same recall) at
# half the bytes and 30% less search time; 2,048 lists scan fewer keys per query than 1,024 for a
# better recall.
# Too few keys for the list count (< 39 per list) lower it automatically.
DEFAULT_FACTORY = "IVF2048,SQfp16"
DEFAULT_NPROBE = 10
DEFAULT_EF_SEARCH = 64
DEFAULT_TRAIN_SIZE = 100_000
ADD_BATCH = 65_536


# faiss computes exhaustive L2 distances with BLAS only from this many queries at once; its default
# (128,000 in faiss 1.15) keeps a decoding step's 16-160 queries on the scalar path: exact search over
# 260k keys took 1.76 s for 80 queries on one core, 0.16 s through BLAS. The neighbours are the same up
# to float rounding of near-ties.
BLAS_THRESHOLD = 16


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as error:  # pragma: no cover
        raise ImportError("the datastore index needs faiss: pip install faiss-cpu (or faiss-gpu)") from error
    if getattr(faiss.cvar, "distance_compute_blas_threshold", 0) > BLAS_THRESHOLD:
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    return faiss


def gpu_count(use_gpu: bool | str = "auto") -> int:
    """Number of GPUs faiss can use: 0 when ``use_gpu`` is False, when this faiss has no GPU support,
    or when no GPU is present. ``use_gpu=True`` with none available raises."""
    faiss = _faiss()
    count = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources") else 0
    if use_gpu is True and count == 0:
        raise RuntimeError("use_gpu=True but this faiss has no GPU support or no GPU is present "
                           "(install faiss-gpu on a machine with a CUDA GPU, or use_gpu='auto')")
    return 0 if use_gpu is False else count


def _to_gpu(index: Any) -> Any:
    """``index`` on all GPUs, or unchanged when faiss cannot put this index type on a GPU (e.g. HNSW)."""
    faiss = _faiss()
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError):
        return index


def _to_cpu(index: Any) -> Any:
    faiss = _faiss()
    try:
        return faiss.index_gpu_to_cpu(index)
    except (RuntimeError, AttributeError, TypeError):
        return index


def needs_training(factory: str, dim: int) -> bool:
    faiss = _faiss()
    return not faiss.index_factory(dim, factory, faiss.METRIC_L2).is_trained


def set_search_params(index: Any, nprobe: int | None = None, ef_search: int | None = None) -> dict[str, int]:
    """Set ``nprobe`` (IVF) and ``efSearch`` (HNSW) where ``index`` has them; returns those set."""
    faiss = _faiss()
    applied: dict[str, int] = {}
    space = faiss.GpuParameterSpace() if "Gpu" in type(index).__name__ and hasattr(faiss, "GpuParameterSpace") \
        else faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
        if value is None:
            continue
        try:
            space.set_index_parameter(index, name, int(value))
            applied[name] = int(value)
        except RuntimeError:
            pass  # this index type has no such parameter
    return applied


def _default_params(factory: str) -> dict[str, int]:
    params = {}
    if re.search(r"IVF\d+", factory):
        params["nprobe"] = DEFAULT_NPROBE
    if "HNSW" in factory:
        params["ef_search"] = DEFAULT_EF_SEARCH
    return params


def fit_factory_to_size(factory: str, count: int) -> str:
    """``factory`` with its IVF list count lowered to ``count // 39`` (at least 1) when ``count`` keys
    are too few to train that many lists; unchanged otherwise."""
    match = re.search(r"IVF(\d+)", factory)
    if not match or count >= 39 * int(match.group(1)):
        return factory
    return factory[:match.start(1)] + str(max(1, count // 39)) + factory[match.end(1):]


def _sample_rows(keys: np.ndarray, size: int, seed: int) -> np.ndarray:
    """(size, dim) float32: ``size`` distinct rows of ``keys`` drawn at random (sorted, for memmaps)."""
    if size >= len(keys):
        return np.ascontiguousarray(keys, dtype=np.float32)
    picks = np.sort(np.random.default_rng(seed).choice(len(keys), size=size, replace=False))
    return np.ascontiguousarray(keys[picks], dtype=np.float32)


def build_index(keys: np.ndarray, folder: str | os.PathLike | None, factory: str, *,
                nprobe: int | None = None, ef_search: int | None = None, train_size: int | None = None,
                use_gpu: bool | str = "auto", seed: int = 0, progress: bool = True,
                return_index: bool = False) -> Any:
    """Build the ``factory`` index over ``keys`` (count, dim), any float dtype, memory-mapped is fine.

    Writes ``folder/index.faiss`` (unless ``folder`` is None) and returns its JSON description
    (factory, file, metric, search params, training size, build seconds, bytes, bytes per entry), or
    ``(description, index)`` when ``return_index``. ``factory="none"`` builds nothing.
    """
    faiss = _faiss()
    count, dim = keys.shape
    if factory.lower() == "none":
        return ({"factory": "none"}, None) if return_index else {"factory": "none"}
    requested = factory
    factory = fit_factory_to_size(factory, count)
    if factory != requested:
        print(f"faiss: {count:,} keys are too few to train {requested!r} (faiss wants >= 39 per IVF list); "
              f"using {factory!r}")
    started = time.perf_counter()
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as error:
        raise ValueError(f"faiss cannot build index_factory({dim}, {factory!r}): {error}") from error
    gpus = gpu_count(use_gpu)
    if gpus:
        index = _to_gpu(index)
    trained_on = 0
    if not index.is_trained:
        match = re.search(r"IVF(\d+)", factory)
        default_size = max(DEFAULT_TRAIN_SIZE, 64 * int(match.group(1))) if match else DEFAULT_TRAIN_SIZE
        sample = _sample_rows(keys, min(count, train_size or default_size), seed)
        try:
            index.train(sample)
        except RuntimeError as error:
            raise ValueError(f"faiss could not train {factory!r} on {len(sample):,} keys of dim {dim} "
                             f"({str(error).splitlines()[0]}); choose a smaller index (e.g. 'Flat' or "
                             f"'HNSW32') for a store this small") from error
        trained_on = len(sample)
        del sample
    for start in tqdm(range(0, count, ADD_BATCH), desc=f"faiss add ({factory})", unit="batch",
                      disable=not progress, dynamic_ncols=True):
        index.add(np.ascontiguousarray(keys[start:start + ADD_BATCH], dtype=np.float32))
    params = {**_default_params(factory), **{k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search))
                                             if v is not None}}
    set_search_params(index, params.get("nprobe"), params.get("ef_search"))
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {"factory": factory, "requested_factory": requested, "file": INDEX_FILE,
                            "metric": "L2", "count": int(index.ntotal),
                            "nprobe": params.get("nprobe"), "efSearch": params.get("ef_search"),
                            "trained_on": trained_on, "build_seconds": round(seconds, 3),
                            "built_on_gpu": bool(gpus)}
    if folder is not None:
        path = Path(folder) / INDEX_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(_to_cpu(index), str(tmp))
        os.replace(tmp, path)
        meta["bytes"] = path.stat().st_size
        meta["bytes_per_entry"] = round(meta["bytes"] / max(count, 1), 2)
    return (meta, index) if return_index else meta


def load_index(path: str | os.PathLike, nprobe: int | None = None, ef_search: int | None = None,
               use_gpu: bool | str = "auto", mmap: bool = False) -> Any:
    """Read a saved index (onto the GPUs when faiss has them and ``use_gpu`` allows) and set its search
    parameters. ``mmap=True`` maps the file instead of reading it (CPU, index types that allow it)."""
    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: rebuild the store with `t2m datastore build --overwrite`, or "
                                "search the keys exactly (--exact; exact=True in Python)")
    flags = faiss.IO_FLAG_MMAP if mmap else 0
    index = faiss.read_index(str(path), flags)
    if gpu_count(use_gpu):
        index = _to_gpu(index)
    set_search_params(index, nprobe, ef_search)
    return index


def exact_index(keys: np.ndarray, use_gpu: bool | str = "auto") -> Any:
    """An in-memory exact (``IndexFlatL2``) index over ``keys`` (converted to float32 in blocks)."""
    faiss = _faiss()
    index = faiss.IndexFlatL2(keys.shape[1])
    if gpu_count(use_gpu):
        index = _to_gpu(index)
    for start in range(0, len(keys), ADD_BATCH):
        index.add(np.ascontiguousarray(keys[start:start + ADD_BATCH], dtype=np.float32))
    return index
