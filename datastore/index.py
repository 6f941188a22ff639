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
import warnings
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
# Since issue 30 the default is sized by the store's entry count (``"auto"``, :func:`sized_factory`):
# IVF{~4·sqrt(N)},SQfp16 -- IVF2048 at 260k, as measured above. faiss's guidance puts an HNSW coarse
# quantizer beyond 1M entries; on clustered keys (the 300k synthetic mixture of bench_scale.py, the same
# k-means centroids) an HNSW32 quantizer mis-assigned keys at add time: list imbalance 155 / 56 / 5.3 at
# efSearch 16 / 64 / 128 against 2.4 with the flat quantizer, and 143k / 89k / 24k codes scanned per query
# against 12k (8.3 / 2.9 / 0.73 ms against 0.49 ms per query). A flat quantizer over 16,384 lists (10M
# entries) costs ~4 Mflop a query, less than the codes it saves, so the HNSW quantizer starts only at
# 65,536 lists, and an IVF's HNSW quantizer assigns keys with efSearch >= ADD_EF_SEARCH.
DEFAULT_FACTORY = "auto"
DEFAULT_CODEC = "SQfp16"
DEFAULT_NPROBE = 10
# nprobe sized by the list count (bench_scale.py --nprobes, the mixture of docs/datastore_scale.md, d 256,
# IVF-SQfp16 as `auto` sizes it, 320 queries; recall@16 at nprobe 6 / 8 / 10 / 12 / 16 / 20):
#   100k, IVF1024:  0.976 / 0.977 / 0.979 / 0.980 / 0.981 / 0.981
#   300k, IVF2048:  0.987 / 0.992 / 0.993 / 0.994 / 0.994 / 0.994
#   1M,   IVF4096:  0.967 / 0.983 / 0.990 / 0.995 / 0.998 / 0.999   (14: 0.997)
#   3M,   IVF8192:    -   / 0.914 / 0.947 / 0.979 (14) / 0.986 / 0.994
# A fixed nprobe covers a smaller share of a query's neighbourhood as lists shrink: 3M fell below 0.95 at
# 10. That mixture is harder than real keys (twice the codes scanned of the official stores' keys for
# the same recall). Real keys (the official split's stores, 2,000 test decoder states, bench_real_stores.py
# --nprobes) and a mixture fitted to them (bench_scale.py --mixture, 320 queries):
#   text2mol 1.7M, IVF4096: nprobe 10 / 13 / 14 / 16: 0.996 / 0.998 / 0.9985 / 0.999
#   mol2text 2.3M, IVF8192: nprobe 10 / 13 / 16 / 20: 0.992 / 0.995 / 0.996 / 0.997
#   fitted 10M, IVF16384:   nprobe 10 / 13 / 20 / 28: 0.973 / 0.991 / 0.999 / 0.999
# nprobe 10 up to 2,048 lists (the shipped stores' index, unchanged), then 10 * (nlist / 2048)^(1/3):
# 13 at 4,096 lists, 16 at 8,192, 20 at 16,384 (10M), 32 at 65,536 (the random mixture at 3M: 0.986 at
# 16). Codes scanned per query then grow as N^(2/3) instead of N^0.5 (nprobe fixed) or N (nprobe
# proportional to nlist).
NPROBE_REFERENCE_LISTS = 2048
DEFAULT_EF_SEARCH = 64
DEFAULT_TRAIN_SIZE = 100_000
TRAIN_PER_LIST = 64  # training keys per IVF list (faiss warns below 39, its guidance is 30-256)
HNSW_QUANTIZER_FROM_LISTS = 65_536  # IVF lists from which the coarse quantizer is an HNSW32 graph
ADD_EF_SEARCH = 128  # efSearch of an IVF's HNSW quantizer while keys are assigned to lists
# PQ indexes: a shortlist of rerank x k entries, re-ranked exactly from the keys. On 100k synthetic keys
# (bench_scale.py's mixture, IVF1024,PQ64 nprobe 10, 320 queries) recall@16 was 0.700 / 0.972 / 0.9785 /
# 0.9785 with no / 4k / 8k / 16k re-ranked (IVF1024,SQfp16: 0.979), at the same time per step up to 8k.
DEFAULT_RERANK = 8
ADD_BATCH = 65_536
# exact search over more float32 key bytes than this streams the memory-mapped keys in blocks
EXACT_IN_MEMORY_BYTES = 256 << 20
# IVF-PQ's precomputed distance table is computed (privately, per process) only up to this size
PRECOMPUTED_TABLE_BYTES = 64 << 20


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


class IndexFallbackWarning(UserWarning):
    """The index is not what was asked for (GPU -> CPU, a search parameter not applied, fewer IVF lists,
    a file read instead of mapped): the message names the cause and the fix, and ``datastore.json`` records
    what is in force."""


def fallback(message: str, record: list[str] | None = None) -> None:
    """Warn ``message`` (an :class:`IndexFallbackWarning`) and append it to ``record`` when given."""
    warnings.warn(message, IndexFallbackWarning, stacklevel=3)
    if record is not None:
        record.append(message)


# ------------------------------------------------------------------------------------------------ GPUs


def machine_gpus() -> int:
    """CUDA GPUs on this machine as torch sees them (0 without torch or CUDA): what faiss could use."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover  (a broken CUDA install counts as none)
        return 0


def gpu_count(use_gpu: bool | str = "auto", record: list[str] | None = None) -> int:
    """Number of GPUs faiss can use: 0 when ``use_gpu`` is False, when this faiss has no GPU support,
    or when no GPU is present. ``use_gpu=True`` with none available raises; a machine with GPUs but a
    faiss without GPU support warns (:class:`IndexFallbackWarning`) unless ``use_gpu`` is False."""
    if use_gpu is False:
        return 0
    faiss = _faiss()
    gpu_faiss = hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources")
    count = faiss.get_num_gpus() if gpu_faiss else 0
    if use_gpu is True and count == 0:
        raise RuntimeError("use_gpu=True but this faiss has no GPU support or no GPU is present "
                           "(install faiss-gpu on a machine with a CUDA GPU, or use_gpu='auto')")
    if not gpu_faiss and machine_gpus():
        fallback(f"faiss: this machine has {machine_gpus()} CUDA GPU(s) but the installed faiss has no GPU support: "
                 "the index runs on the CPU; install faiss-gpu (e.g. pip install faiss-gpu-cu12) to use them, or "
                 "pass use_gpu=False to run on the CPU without this warning", record)
    return count


def _gpu_options(index: Any) -> Any:
    """Cloner options for ``index``: float16 lookup tables for IVF-PQ (faiss's shared-memory check refuses
    PQ48 and up at d 256 in float32) and float16 IVF-Flat lists; None on a faiss without them."""
    faiss = _faiss()
    if not hasattr(faiss, "GpuMultipleClonerOptions"):
        return None
    options = faiss.GpuMultipleClonerOptions()
    options.useFloat16 = True  # GpuIndexIVFPQ: useFloat16LookupTables
    return options


def to_gpu(index: Any, record: list[str] | None = None, what: str = "index", gpus: int | None = None
           ) -> tuple[Any, bool]:
    """(``index`` on all GPUs -- the first ``gpus`` when given --, True), or (``index`` unchanged, False)
    with a warning naming faiss's reason and the fix when faiss cannot put it there (an index type without
    a GPU version such as HNSW, PQ codes too large for shared memory, out of GPU memory)."""
    faiss = _faiss()
    try:
        return faiss.index_cpu_to_all_gpus(index, co=_gpu_options(index), ngpu=int(gpus or -1)), True
    except (RuntimeError, AttributeError, TypeError, MemoryError) as error:
        cause = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        if "shared memory" in cause.lower() or "lookup" in cause.lower():
            fix = "use fewer PQ bytes per code (e.g. PQ32), or use_gpu=False"
        elif "sub-quantizers" in cause.lower():  # e.g. auto,PQ at d 1,024: PQ256
            fix = ("faiss-gpu's IVF-PQ codes take 1-4, 8, 12, ..., 32, 40, 48, 56, 64 or 96 bytes: use e.g. "
                   "'auto,PQ64' or 'auto,PQ96', or use_gpu=False")
        elif "memory" in cause.lower() or "alloc" in cause.lower():
            fix = "free GPU memory, or use_gpu=False to search the memory-mapped index on the CPU"
        else:
            fix = "use an index type faiss has on GPUs (IVF-Flat, IVF-SQ, IVF-PQ, Flat), or use_gpu=False"
        fallback(f"faiss could not put the {what} ({type(faiss.downcast_index(index)).__name__}) on the GPU "
                 f"({cause}): it stays on the CPU; {fix}", record)
        return index, False


def _to_cpu(index: Any) -> Any:
    faiss = _faiss()
    try:
        return faiss.index_gpu_to_cpu(index)
    except (RuntimeError, AttributeError, TypeError):
        return index


# ------------------------------------------------------------------------------------ search parameters


def replicas(index: Any) -> list[Any]:
    """The indexes that answer a search: each replica of an ``IndexReplicas`` (several GPUs), else the
    index itself (downcast)."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if hasattr(index, "at") and hasattr(index, "count") and "Replicas" in type(index).__name__:
        return [faiss.downcast_index(index.at(i)) for i in range(index.count())]
    return [index]


def _ivf(index: Any) -> Any:
    faiss = _faiss()
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError, AttributeError):
        if hasattr(index, "nprobe") and (hasattr(index, "nlist") or hasattr(index, "getNumLists")):
            return index  # a GPU IVF
        return None


def _hnsw(index: Any) -> Any:
    """The HNSW graph that ``efSearch`` sets: the index's own, or its IVF coarse quantizer's."""
    faiss = _faiss()
    ivf = _ivf(index)
    for candidate in ((faiss.downcast_index(ivf.quantizer),) if ivf is not None else ()) + (index,):
        if hasattr(candidate, "hnsw"):
            return candidate.hnsw
    return None


def _code_size(index: Any, ivf: Any) -> int | None:
    """Bytes per stored vector: of the IVF lists, the flat codes, or an HNSW index's storage."""
    holder = ivf if ivf is not None else index
    if not getattr(holder, "code_size", 0) and hasattr(index, "storage"):
        holder = _faiss().downcast_index(index.storage)
    return int(getattr(holder, "code_size", 0)) or None


def index_params(index: Any) -> dict[str, Any]:
    """What ``index`` does now, read back from it: type, entries, IVF lists and ``nprobe``, bytes per code,
    HNSW ``efSearch`` (of the index or its coarse quantizer), replicas. A parameter the replicas disagree
    on is the list of their values."""
    parts = replicas(index)
    found: dict[str, list] = {}
    for part in parts:
        ivf, hnsw = _ivf(part), _hnsw(part)
        nlist = getattr(ivf, "nlist", None) if ivf is None or hasattr(ivf, "nlist") else ivf.getNumLists()
        values = {"type": type(part).__name__, "nlist": int(nlist) if nlist is not None else None,
                  "nprobe": int(ivf.nprobe) if ivf is not None else None,
                  "code_size": _code_size(part, ivf),
                  "efSearch": int(hnsw.efSearch) if hnsw is not None else None}
        if ivf is not None:
            values["quantizer"] = type(_faiss().downcast_index(ivf.quantizer)).__name__
        for name, value in values.items():
            found.setdefault(name, []).append(value)
    out: dict[str, Any] = {name: (v[0] if len(set(map(str, v))) == 1 else v) for name, v in found.items()}
    out["count"] = int(index.ntotal)
    if len(parts) > 1:
        out["replicas"] = len(parts)
    return out


def set_search_params(index: Any, nprobe: int | None = None, ef_search: int | None = None,
                      record: list[str] | None = None) -> dict[str, int]:
    """Set ``nprobe`` (IVF lists searched) and ``efSearch`` (HNSW, or an IVF's HNSW coarse quantizer) on
    ``index`` -- on every replica of a multi-GPU index -- and return those in force, read back. A
    parameter ``index`` has no place for, or that does not read back as set, is a warning."""
    faiss = _faiss()
    for part in replicas(index):
        ivf, hnsw = _ivf(part), _hnsw(part)
        if nprobe is not None and ivf is not None:
            if "Gpu" in type(part).__name__ and hasattr(faiss, "GpuParameterSpace"):
                faiss.GpuParameterSpace().set_index_parameter(part, "nprobe", int(nprobe))
            else:
                ivf.nprobe = int(nprobe)
        if ef_search is not None and hnsw is not None:
            hnsw.efSearch = int(ef_search)
    params = index_params(index)
    applied = {}
    for name, asked in (("nprobe", nprobe), ("efSearch", ef_search)):
        if asked is None:
            continue
        if params.get(name) is None:
            fallback(f"faiss: {name}={asked} not applied: the {params['type']} index has no {name} "
                     f"({'no inverted lists' if name == 'nprobe' else 'no HNSW graph'}); drop the option", record)
        elif params[name] != int(asked):
            fallback(f"faiss: {name}={asked} asked but the index reports {params[name]}: "
                     "search runs with what it reports; report this with the index type", record)
        else:
            applied[name] = int(asked)
    return applied


def needs_training(factory: str, dim: int) -> bool:
    faiss = _faiss()
    return not faiss.index_factory(dim, resolve_factory(factory, 10 ** 9, dim), faiss.METRIC_L2).is_trained


# ----------------------------------------------------------------------------------------- the factory


def sized_factory(count: int, dim: int, codec: str = DEFAULT_CODEC) -> str:
    """The factory string faiss's guidance gives ``count`` entries: IVF with nlist the power of two nearest
    4·sqrt(count) (at least 39 keys per list), an HNSW32 coarse quantizer from
    :data:`HNSW_QUANTIZER_FROM_LISTS` lists (see the measurements above ``DEFAULT_FACTORY``); ``codec`` ``"SQfp16"`` (2 bytes a dimension, no loss on float16
    keys) or ``"PQ"`` (dim/4 bytes per entry, 8x smaller, re-ranked exactly from the keys)."""
    nlist = 2 ** int(round(np.log2(max(1.0, 4 * np.sqrt(max(count, 1))))))
    nlist = max(1, min(nlist, count // 39))
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_FROM_LISTS else f"IVF{nlist}"
    if codec.upper() == "PQ":
        codec = f"PQ{max(1, dim // 4)}"
    return f"{coarse},{codec}"


def resolve_factory(factory: str, count: int, dim: int) -> str:
    """``factory`` for ``count`` keys of ``dim``: ``"auto"`` / ``"auto,PQ"`` / ``"auto,<codec>"`` sized by
    :func:`sized_factory`, any other string with its IVF list count lowered when the keys are too few."""
    if factory.lower() == "auto":
        return sized_factory(count, dim)
    if factory.lower().startswith("auto,"):
        return sized_factory(count, dim, factory.split(",", 1)[1])
    return fit_factory_to_size(factory, count)


def default_nprobe(nlist: int) -> int:
    """IVF lists a search visits by default: :data:`DEFAULT_NPROBE` up to :data:`NPROBE_REFERENCE_LISTS`
    lists, then growing as the cube root of the list count (see the measurements above it)."""
    return max(DEFAULT_NPROBE, int(round(DEFAULT_NPROBE * np.cbrt(max(nlist, 1) / NPROBE_REFERENCE_LISTS))))


def default_params(factory: str) -> dict[str, int]:
    params = {}
    match = re.search(r"IVF(\d+)", factory)
    if match:
        params["nprobe"] = default_nprobe(int(match.group(1)))
    if "HNSW" in factory:
        params["ef_search"] = DEFAULT_EF_SEARCH
    return params


def default_train_size(factory: str, count: int) -> int:
    """Keys to train ``factory`` on: :data:`TRAIN_PER_LIST` per IVF list, at least :data:`DEFAULT_TRAIN_SIZE`
    (PQ and SQ codebooks), at most ``count``."""
    match = re.search(r"IVF(\d+)", factory)
    per_lists = TRAIN_PER_LIST * int(match.group(1)) if match else 0
    return min(count, max(DEFAULT_TRAIN_SIZE, per_lists))


def default_rerank(factory: str) -> int | None:
    """Shortlist factor of a lossy code (PQ): its ``rerank * k`` nearest by code are re-ranked exactly from
    the memory-mapped keys; None for codes that keep the float16 keys (Flat, SQfp16)."""
    return DEFAULT_RERANK if re.search(r"PQ\d+", factory) and "Refine" not in factory else None


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


# ------------------------------------------------------------------------------------- build and load


def _no_polysemous_training(index: Any) -> None:
    """Turn off the polysemous training faiss's factory gives PQ codes: it takes 10x the PQ training time
    and serves only polysemous filtering (``polysemous_ht``), which search here never sets."""
    faiss = _faiss()
    for part in (index, _ivf(index)):
        part = faiss.downcast_index(part) if part is not None else None
        if part is not None and getattr(part, "do_polysemous_training", False):
            part.do_polysemous_training = False


def _out_of_gpu_memory(error: BaseException) -> bool:
    """Whether ``error`` is faiss's GPU allocation failure (``StandardGpuResources: alloc fail ... cudaMalloc
    error out of memory``)."""
    text = str(error).lower()
    return "cudamalloc" in text or "alloc fail" in text or "out of memory" in text


def _train(index: Any, keys: np.ndarray, factory: str, size: int, seed: int) -> int:
    sample = _sample_rows(keys, size, seed)
    try:
        index.train(sample)
    except RuntimeError as error:
        if _out_of_gpu_memory(error):
            raise  # build_index builds on the CPU instead
        raise ValueError(f"faiss could not train {factory!r} on {len(sample):,} keys of dim {keys.shape[1]} "
                         f"({str(error).splitlines()[0]}); choose a smaller index (e.g. 'Flat' or "
                         f"'HNSW32') for a store this small") from error
    return len(sample)


def _fill(index: Any, keys: np.ndarray, factory: str, train_size: int, seed: int, progress: bool
          ) -> tuple[int, float]:
    """Train ``index`` (when it needs it) on ``train_size`` random keys, then add every key a block of
    :data:`ADD_BATCH` at a time; returns (keys trained on, ``time.perf_counter()`` when training ended)."""
    trained_on = _train(index, keys, factory, train_size, seed) if not index.is_trained else 0
    trained_at = time.perf_counter()
    quantizer_graph = _hnsw(index) if _ivf(index) is not None else None
    if quantizer_graph is not None:  # a greedy graph search over clustered centroids misplaces keys
        quantizer_graph.efSearch = max(int(quantizer_graph.efSearch), ADD_EF_SEARCH)
    for start in tqdm(range(0, len(keys), ADD_BATCH), desc=f"faiss add ({factory})", unit="batch",
                      disable=not progress, dynamic_ncols=True):
        index.add(np.ascontiguousarray(keys[start:start + ADD_BATCH], dtype=np.float32))
    return trained_on, trained_at


def build_index(keys: np.ndarray, folder: str | os.PathLike | None, factory: str = DEFAULT_FACTORY, *,
                nprobe: int | None = None, ef_search: int | None = None, train_size: int | None = None,
                use_gpu: bool | str = "auto", gpus: int | None = None, rerank: int | None = None, seed: int = 0,
                progress: bool = True, return_index: bool = False) -> Any:
    """Build the ``factory`` index over ``keys`` (count, dim), any float dtype, memory-mapped is fine (a
    training sample and one block of :data:`ADD_BATCH` keys are in memory at a time).

    Writes ``folder/index.faiss`` (unless ``folder`` is None) and returns its JSON description, or
    ``(description, index)`` when ``return_index``: the factory used and asked for, the parameters in force
    read back from the index (:func:`index_params`: nlist, nprobe, code size, efSearch), ``rerank``,
    training size, build seconds (train and add), ``built_on_gpu`` (whether it was: a failed move to the
    GPU is a warning and False; ``gpus``: use the first so many GPUs, default all), the ``fallbacks`` warned about, bytes. ``factory="none"`` builds nothing.
    """
    faiss = _faiss()
    count, dim = keys.shape
    if factory.lower() == "none":
        return ({"factory": "none"}, None) if return_index else {"factory": "none"}
    record: list[str] = []
    requested = factory
    factory = resolve_factory(factory, count, dim)
    if factory != requested and not requested.lower().startswith("auto"):
        fallback(f"faiss: {count:,} keys are too few to train {requested!r} (faiss wants >= 39 per IVF list); "
                 f"using {factory!r}", record)
    started = time.perf_counter()
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as error:
        raise ValueError(f"faiss cannot build index_factory({dim}, {factory!r}): {error}") from error
    _no_polysemous_training(index)
    on_gpu = False
    if gpu_count(use_gpu, record):
        index, on_gpu = to_gpu(index, record, gpus=gpus)
    train_size = min(count, train_size or default_train_size(factory, count))
    try:
        trained_on, trained_at = _fill(index, keys, factory, train_size, seed, progress)
    except RuntimeError as error:
        if not (on_gpu and _out_of_gpu_memory(error)):
            raise
        step = "adding keys" if index.is_trained else "training"
        fallback(f"faiss ran out of GPU memory while {step} ({str(error).strip().splitlines()[-1]}): the index is "
                 "built on the CPU instead; free GPU memory, or pass use_gpu=False to skip the GPU", record)
        del index
        index, on_gpu = faiss.index_factory(dim, factory, faiss.METRIC_L2), False
        _no_polysemous_training(index)
        trained_on, trained_at = _fill(index, keys, factory, train_size, seed, progress)
    train_seconds = trained_at - started
    params = {**default_params(factory), **{k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search))
                                            if v is not None}}
    set_search_params(index, params.get("nprobe"), params.get("ef_search"), record)
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {"factory": factory, "requested_factory": requested, "file": INDEX_FILE,
                            "metric": "L2", **index_params(index),
                            "rerank": default_rerank(factory) if rerank is None else (int(rerank) or None),
                            "trained_on": trained_on, "train_seconds": round(train_seconds, 3),
                            "build_seconds": round(seconds, 3), "built_on_gpu": on_gpu, "fallbacks": record}
    if folder is not None:
        path = Path(folder) / INDEX_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(_to_cpu(index), str(tmp))
        os.replace(tmp, path)
        # what the file holds as a CPU loads it (a GPU index reports no code size and a GPU quantizer)
        stored = index_params(faiss.read_index(str(path), mmap_flags()))
        meta.update({name: stored[name] for name in ("type", "nlist", "code_size", "quantizer") if name in stored})
        meta["bytes"] = path.stat().st_size
        meta["bytes_per_entry"] = round(meta["bytes"] / max(count, 1), 2)
    return (meta, index) if return_index else meta


def mmap_flags() -> int:
    """faiss read flags that map an index file instead of reading it: ``IO_FLAG_MMAP_IFC`` (faiss >= 1.11:
    the codes of IVF lists, Flat, SQ and HNSW storage are used in place from the mapped file, shared
    between processes) or, on an older faiss, ``IO_FLAG_MMAP | IO_FLAG_READ_ONLY`` (IVF lists only)."""
    faiss = _faiss()
    skip_table = int(getattr(faiss, "IO_FLAG_SKIP_PRECOMPUTE_TABLE", 0))  # see _precomputed_table
    if hasattr(faiss, "IO_FLAG_MMAP_IFC"):
        return int(faiss.IO_FLAG_MMAP_IFC) | skip_table
    return int(faiss.IO_FLAG_MMAP) | int(getattr(faiss, "IO_FLAG_READ_ONLY", 0)) | skip_table


def open_index(path: str | os.PathLike, nprobe: int | None = None, ef_search: int | None = None,
               use_gpu: bool | str = "auto", mmap: bool = True) -> tuple[Any, dict[str, Any]]:
    """``(index, state)``: the saved index at ``path`` with its search parameters set, and what is in
    force (:func:`index_params` plus ``mapped``, ``on_gpu``, ``fallbacks``).

    On the CPU with ``mmap`` the file is memory-mapped (:func:`mmap_flags`): processes that open the
    same store share its pages and an index larger than memory still searches. Where GPUs are used the
    file is read and copied to them; a failed copy (out of memory, an index type without a GPU version)
    warns and searches the mapped file on the CPU."""
    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: rebuild the store with `t2m datastore build --overwrite`, or "
                                "search the keys exactly (exact=True)")
    record: list[str] = []
    gpus = gpu_count(use_gpu, record)
    mapped = bool(mmap and not gpus)
    index = None
    if mapped:
        try:
            index = faiss.read_index(str(path), mmap_flags())
        except RuntimeError as error:
            fallback(f"faiss cannot map {path.name} ({str(error).strip().splitlines()[-1]}): it is read into this "
                     "process's memory instead (each process holds its own copy)", record)
            mapped = False
    if index is None:
        index = faiss.read_index(str(path))
    on_gpu = False
    if gpus:
        index, on_gpu = to_gpu(index, record)
        if not on_gpu and mmap:  # the CPU copy just read would be private: map it instead
            try:
                index, mapped = faiss.read_index(str(path), mmap_flags()), True
            except RuntimeError:
                pass
    if mapped:
        _precomputed_table(index)
    set_search_params(index, nprobe, ef_search, record)
    return index, {**index_params(index), "mapped": mapped, "on_gpu": on_gpu, "fallbacks": record}


def _precomputed_table(index: Any, max_bytes: int = PRECOMPUTED_TABLE_BYTES) -> None:
    """IVF-PQ's precomputed distance table (nlist x M x 256 floats) is private to each process: compute it
    when it takes at most ``max_bytes``, else search without it (read with IO_FLAG_SKIP_PRECOMPUTE_TABLE)."""
    faiss = _faiss()
    ivf = _ivf(index)
    ivf = faiss.downcast_index(ivf) if ivf is not None else None
    if ivf is None or not hasattr(ivf, "use_precomputed_table") or not hasattr(ivf, "pq"):
        return
    table = int(ivf.nlist) * int(ivf.pq.M) * int(ivf.pq.ksub) * 4
    if table <= max_bytes:
        ivf.precompute_table()
    else:
        ivf.use_precomputed_table = -1


def load_index(path: str | os.PathLike, nprobe: int | None = None, ef_search: int | None = None,
               use_gpu: bool | str = "auto", mmap: bool = True) -> Any:
    """The index of :func:`open_index` (memory-mapped on the CPU unless ``mmap=False``)."""
    return open_index(path, nprobe=nprobe, ef_search=ef_search, use_gpu=use_gpu, mmap=mmap)[0]


# ------------------------------------------------------------------------------------------ exact search


class StreamedExactIndex:
    """Exact squared-L2 search over memory-mapped keys, a block of ``block`` keys (float16 -> float32) at a
    time: memory stays one block whatever the store's size. Answers ``search(queries, k)`` as a faiss
    index does (``ntotal``, ``d``)."""

    def __init__(self, keys: np.ndarray, block: int = ADD_BATCH) -> None:
        self.keys = keys
        self.ntotal, self.d = int(keys.shape[0]), int(keys.shape[1])
        self.block = int(block)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        heap = faiss.ResultHeap(len(queries), int(k))
        for start in range(0, self.ntotal, self.block):
            block = np.ascontiguousarray(self.keys[start:start + self.block], dtype=np.float32)
            distances, ids = faiss.knn(queries, block, min(int(k), len(block)))
            if ids.shape[1] < k:  # a last block smaller than k
                pad = k - ids.shape[1]
                distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
                ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            heap.add_result(np.ascontiguousarray(distances, dtype=np.float32),
                            np.ascontiguousarray(np.where(ids >= 0, ids + start, -1), dtype=np.int64))
        heap.finalize()
        return heap.D, heap.I


def exact_index(keys: np.ndarray, use_gpu: bool | str = "auto", max_bytes: int = EXACT_IN_MEMORY_BYTES) -> Any:
    """Exact search over ``keys``: an in-memory ``IndexFlatL2`` (on the GPU when there is one) while the keys
    take at most ``max_bytes`` in float32, else a :class:`StreamedExactIndex` over the memory-mapped keys."""
    faiss = _faiss()
    if keys.shape[0] * keys.shape[1] * 4 > max_bytes:
        return StreamedExactIndex(keys)
    index = faiss.IndexFlatL2(keys.shape[1])
    if gpu_count(use_gpu):
        index, _ = to_gpu(index, what="exact index")
    for start in range(0, len(keys), ADD_BATCH):
        index.add(np.ascontiguousarray(keys[start:start + ADD_BATCH], dtype=np.float32))
    return index
