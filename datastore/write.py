"""Publishing a store: the one path from arrays in a work folder to a finished store folder, shared by
:func:`datastore.build.build_datastore` (keys from a model), :func:`write_datastore` (keys computed
elsewhere: precomputed, synthetic, larger than memory) and :func:`subset_datastore` (a store's entries
of some training rows).

Every path writes the arrays into ``OUT.tmp-build/`` block by block, builds the FAISS index there
(:func:`datastore.index.build_index`), writes ``datastore.json`` last and moves the folder onto ``OUT``
with ``os.replace``: a crash leaves no folder at ``OUT`` that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from datastore.index import ADD_BATCH, DEFAULT_FACTORY, build_index
from datastore.store import (
    ARRAY_DTYPES,
    ARRAY_FILES,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    DatastoreError,
    KNNParams,
    write_json_atomic,
)

WORK_SUFFIX = ".tmp-build"
BLOCK = ADD_BATCH  # entries copied at a time


def work_dir_for(out_dir: Path) -> Path:
    """The folder an unfinished build of ``out_dir`` lives in (resumed by rerunning the build)."""
    return Path(out_dir).with_name(Path(out_dir).name + WORK_SUFFIX)


def publish(work: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished ``work`` folder to ``out_dir`` with ``os.replace`` (atomic on one filesystem)."""
    old = None
    if out_dir.exists():
        if (out_dir / META_FILE).is_file() and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a datastore; pass overwrite=True to replace it")
        old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(work, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def versions() -> dict[str, str]:
    """Versions of the libraries a store's numbers depend on (those installed)."""
    found = {"numpy": np.__version__}
    for name in ("torch", "transformers", "faiss"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:  # pragma: no cover
            pass
    return found


def nearest_other_distance(keys: np.ndarray, index: Any, sample: int = 1024, seed: int = 0) -> float | None:
    """Median squared distance (3 significant digits) from a sample of keys to their nearest other
    entry in ``index``, or None when every sampled key has an exact duplicate."""
    picks = np.sort(np.random.default_rng(seed).choice(len(keys), min(sample, len(keys)), replace=False))
    distances, ids = index.search(np.ascontiguousarray(keys[picks], dtype=np.float32), 2)  # (n, 2)
    other = np.where(ids[:, 0] == picks, distances[:, 1], distances[:, 0])  # skip the key itself
    other = other[np.isfinite(other) & (other > 0) & (ids[:, 1] >= 0)]
    return float(f"{float(np.median(other)):.3g}") if len(other) else None


def array_specs(count: int, dim: int) -> dict[str, dict[str, Any]]:
    return {name: {"file": file, "dtype": ARRAY_DTYPES[name], "shape": [count, dim] if name == "keys" else [count]}
            for name, file in ARRAY_FILES.items()}


def finish_store(work: Path, out_dir: Path, fields: Mapping[str, Any], knn_meta: dict[str, Any], *,
                 index_factory: str, index_options: Mapping[str, Any], auto_temperature: bool,
                 build: Mapping[str, Any], overwrite: bool, progress: bool,
                 before_publish: Any = None, seconds_before: float | None = None) -> dict[str, Any]:
    """Index the arrays in ``work``, write ``datastore.json`` (the header, ``fields`` -- key, task, data,
    model, tokenizer --, ``knn_meta``, the index's description, ``build``) and publish ``work`` as
    ``out_dir``; returns the JSON written. ``auto_temperature`` replaces ``knn_meta``'s temperature by the
    keys' scale (:func:`nearest_other_distance`). ``before_publish()`` runs after the index is written.
    ``seconds_before`` (the caller's build time so far) plus the indexing here is recorded as
    ``build["seconds"]``, the whole build's wall time."""
    started = time.perf_counter()
    keys = np.load(work / ARRAY_FILES["keys"], mmap_mode="r")
    count, dim = keys.shape
    index_meta, index = build_index(keys, work, factory=index_factory, progress=progress, return_index=True,
                                    **dict(index_options))
    knn_meta = dict(knn_meta)
    if auto_temperature and index is not None and count > 1:
        temperature = nearest_other_distance(keys, index)
        if temperature is not None:
            knn_meta["temperature"] = temperature
            knn_meta.setdefault("temperature_source", "median squared L2 distance of 1,024 random stored keys to "
                                                      "their nearest other key")
    del index
    build = dict(build)
    if seconds_before is not None:
        build["seconds"] = round(seconds_before + time.perf_counter() - started, 3)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "count": int(count), "dim": int(dim),
            "arrays": array_specs(count, dim), **fields, "knn": knn_meta, "index": index_meta,
            "build": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **build,
                      "versions": versions()}}
    if before_publish is not None:
        before_publish()
    write_json_atomic(work / META_FILE, meta)
    publish(work, out_dir, overwrite)
    return meta


def _fresh_work_dir(out_dir: Path, overwrite: bool) -> Path:
    if (out_dir / META_FILE).is_file() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a datastore; pass overwrite=True to replace it")
    work = work_dir_for(out_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


def _as_array(value: Any, name: str) -> np.ndarray:
    """``value`` as an array: a ``.npy`` path is memory-mapped, anything else goes through ``np.asarray``."""
    if isinstance(value, (str, os.PathLike)):
        return np.load(value, mmap_mode="r", allow_pickle=False)
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if name != "keys" and array.ndim != 1:
        raise ValueError(f"{name} must be one number per entry, got shape {array.shape}")
    return array


def _copy_in_blocks(source: Any, target: Path, dtype: str, picks: np.ndarray | None, count: int,
                    name: str, block: int) -> None:
    """Write ``source`` (or its rows ``picks``) as ``dtype`` into the ``.npy`` ``target``, ``block`` rows
    at a time (a memory-mapped source larger than memory is fine)."""
    shape = (count, source.shape[1]) if name == "keys" else (count,)
    out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=shape)
    info = np.iinfo(dtype) if np.dtype(dtype).kind == "i" else None
    for start in range(0, count, block):
        part = source[start:start + block] if picks is None else source[picks[start:start + block]]
        part = np.asarray(part)
        if info is not None and len(part) and (part.min() < info.min or part.max() > info.max):
            raise ValueError(f"{name}: values outside {dtype} ({part.min()} .. {part.max()})")
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            converted = part.astype(dtype, copy=False)
        if name == "keys" and not np.isfinite(converted).all():
            bad = start + int(np.flatnonzero(~np.isfinite(converted).all(1))[0])
            raise ValueError(f"keys: entry {bad} is not finite in float16 (|x| > 65,504, NaN or inf); scale the "
                             "keys (e.g. by d_model ** -0.5, as T5's LM head does) before writing them")
        out[start:start + len(part)] = converted
    out.flush()
    del out


def write_datastore(out: str | os.PathLike, keys: Any, values: Any, *, rows: Any = None, positions: Any = None,
                    meta: Mapping[str, Any] | None = None, factory: str = DEFAULT_FACTORY, nprobe: int | None = None,
                    ef_search: int | None = None, train_size: int | None = None, use_gpu: bool | str = "auto",
                    rerank: int | None = None, knn: KNNParams | None = None, auto_temperature: bool | None = None,
                    overwrite: bool = False, progress: bool = False, block: int = BLOCK) -> Path:
    """Publish a store in ``out`` from precomputed arrays; returns ``out``. ``Datastore.load(out).retriever()``
    searches it.

    ``keys``: (count, dim) floats, or the path of a ``.npy`` file (memory-mapped: it may be larger than
    memory; it is copied as float16 in blocks of ``block`` keys and the index is trained on a sample, then
    filled a block at a time). ``values``: (count,) token ids. ``rows`` (default: entry i is row i) and
    ``positions`` (default 0): each entry's source row and target position. ``meta``: fields of
    ``datastore.json`` to record -- ``task``, ``data``, ``key`` (e.g. ``{"layer": "lm_head_input"}``),
    ``model`` / ``tokenizer`` (fingerprints from :func:`datastore.model_fingerprint`; without them the store
    checks no model). The index: ``factory`` (``"auto"``: sized by count, ``"auto,PQ"``: PQ codes re-ranked
    from the keys, or any faiss factory string, ``"none"``), ``nprobe``, ``ef_search``, ``train_size``,
    ``use_gpu``, ``rerank`` (see :func:`datastore.index.build_index`). ``knn``: default k, λ, T (None:
    :class:`KNNParams` with T from the keys' scale unless ``auto_temperature`` is False).
    """
    started = time.perf_counter()
    out_dir = Path(out)
    keys, values = _as_array(keys, "keys"), _as_array(values, "values")
    if keys.ndim != 2 or not keys.shape[0] or not keys.shape[1]:
        raise ValueError(f"keys must be (count, dim) with count, dim >= 1, got shape {keys.shape}")
    count, dim = keys.shape
    if not np.issubdtype(keys.dtype, np.floating):
        raise ValueError(f"keys must be floating point, got {keys.dtype}")
    arrays = {"keys": keys, "values": values,
              "rows": np.arange(count, dtype=np.int64) if rows is None else _as_array(rows, "rows"),
              "positions": np.zeros(count, dtype=np.int32) if positions is None else _as_array(positions, "positions")}
    for name, array in arrays.items():
        if len(array) != count:
            raise ValueError(f"{name} has {len(array):,} entries but keys have {count:,}")
    auto_temperature = knn is None if auto_temperature is None else auto_temperature
    work = _fresh_work_dir(out_dir, overwrite)
    for name, file in ARRAY_FILES.items():
        _copy_in_blocks(arrays[name], work / file, ARRAY_DTYPES[name], None, count, name, block)
    given = dict(meta or {})
    fields = {"key": {"layer": "given", "distance": "squared L2 (faiss METRIC_L2)", **dict(given.pop("key", {}))},
              "task": given.pop("task", None), "data": json.loads(json.dumps(given.pop("data", {}), default=str)),
              "model": given.pop("model", None), "tokenizer": given.pop("tokenizer", None), **given}
    knn_meta = {**(knn or KNNParams()).to_json(), "source": "default" if knn is None else "given"}
    options = {"nprobe": nprobe, "ef_search": ef_search, "train_size": train_size, "use_gpu": use_gpu,
               "rerank": rerank}
    write_seconds = time.perf_counter() - started
    finish_store(work, out_dir, fields, knn_meta, index_factory=factory, index_options=options,
                 auto_temperature=auto_temperature, overwrite=overwrite, progress=progress,
                 build={"from_arrays": True, "compute_seconds": 0.0, "write_seconds": round(write_seconds, 3)})
    return out_dir


def subset_datastore(source: str | os.PathLike, out_dir: str | os.PathLike, rows: Sequence[int], *,
                     data: Mapping[str, Any] | None = None, index_factory: str | None = None,
                     index_options: Mapping[str, Any] | None = None, overwrite: bool = False,
                     progress: bool = True, block: int = BLOCK) -> Path:
    """A datastore of the entries of the store in ``source`` that came from the training ``rows`` (the
    store's own row ids), published in ``out_dir`` with its own index; returns ``out_dir``. The entries
    are copied ``block`` at a time from the memory-mapped source.

    A store built from those rows would hold the same keys -- each entry is one target token of one
    pair under teacher forcing, independent of the other pairs -- so this gives the datastore-size
    curve without running the model again: only the entries are copied and the index trained anew.
    ``data`` replaces the source's data description (rows, fraction, ...); ``index_factory`` defaults
    to the source index's requested factory. k, λ and T are copied, T recomputed from the subset's keys
    when the source's was computed from its keys (an untuned store)."""
    from datastore.store import Datastore

    started = time.perf_counter()
    store = Datastore.load(source)
    out_dir = Path(out_dir)
    if (out_dir / META_FILE).is_file() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a datastore; pass overwrite=True to replace it")
    wanted = np.zeros(int(store.rows.max()) + 1 if store.count else 0, dtype=bool)
    rows = np.asarray(sorted(set(int(r) for r in rows)), dtype=np.int64)
    rows = rows[rows < len(wanted)]
    wanted[rows] = True
    picks = np.concatenate([np.flatnonzero(wanted[np.asarray(store.rows[start:start + block])]) + start
                            for start in range(0, store.count, block)] or [np.zeros(0, dtype=np.int64)])
    if not len(picks):
        raise DatastoreError(f"{store.path}: none of its entries come from the {len(rows)} rows asked for")
    work = _fresh_work_dir(out_dir, overwrite)
    arrays = {"keys": store.keys, "values": store.values, "rows": store.rows, "positions": store.positions}
    for name, file in ARRAY_FILES.items():
        _copy_in_blocks(arrays[name], work / file, ARRAY_DTYPES[name], picks, len(picks), name, block)
    source_index = store.meta.get("index", {})
    factory = index_factory or source_index.get("requested_factory") or source_index.get("factory")
    options = dict(index_options or {})
    if "nprobe" not in options and source_index.get("nprobe") is not None:
        options["nprobe"] = source_index["nprobe"]
    source_knn = store.meta.get("knn", {})
    knn_meta = {key: source_knn[key] for key in ("k", "lambda", "temperature") if key in source_knn}
    knn_meta["source"] = f"copied from {store.path} ({source_knn.get('source', 'default')})"
    if source_knn.get("temperature_source"):
        knn_meta["temperature_source"] = source_knn["temperature_source"]
    skip = {"format", "format_version", "count", "dim", "arrays", "knn", "index", "build"}
    fields = {**{k: v for k, v in store.meta.items() if k not in skip},
              "data": json.loads(json.dumps(data if data is not None else store.meta.get("data", {}), default=str))}
    finish_store(work, out_dir, fields, knn_meta, index_factory=factory, index_options=options,
                 auto_temperature=bool(source_knn.get("temperature_source")), overwrite=overwrite, progress=progress,
                 build={"subset_of": str(store.path), "subset_rows": int(len(rows)), "compute_seconds": 0.0,
                        "subset_seconds": round(time.perf_counter() - started, 3)})
    return out_dir
