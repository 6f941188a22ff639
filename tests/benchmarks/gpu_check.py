"""The Python half of ``tests/benchmarks/gpu_check.sh`` (issue 30, item 8): what ran where, read back.

    python tests/benchmarks/gpu_check.py index --entries 1000000 --dim 256 --queries 300 --work DIR
    python tests/benchmarks/gpu_check.py where --store DIR [--model t2m/default_model]

``index``: synthetic keys (``datastore.testing.mixture_keys``, float16, memory-mapped) become two stores
through ``datastore.write_datastore`` -- an IVF-PQ index (``--pq`` bytes a code, float16 lookup tables on
the GPU, re-ranked from the keys) and an IVF-Flat index, both with the list count ``auto`` gives N
(:func:`datastore.index.sized_factory`) -- each built where faiss can (``--gpu``), then loaded the way
``t2m translate`` loads a store (``Datastore.load(...).retriever()``) and searched: ms per step of 160
queries and recall@16 of ``--queries`` queries against exact search (streamed over the mapped keys).
Everything printed about an index is read back from ``datastore.json`` (what the build did) and from the
loaded index (``retriever.state``: what searches now).

``where``: where a ``t2m datastore build`` computed its keys (``datastore.json``'s ``build.device``), where
its index was built, where ``t2m translate --knn`` searches it and where that command runs the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 16
STEP_ROWS = 160  # a decoding step of batch 32 x beam 5


def _keys(work: Path, count: int, dim: int, clusters: int) -> Path:
    from datastore.testing import mixture_keys

    path = work / f"keys-{count}-{dim}-{clusters}.npy"
    if not path.is_file():
        tmp = path.with_suffix(".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(count, dim))
        mixture_keys(count, dim, clusters=clusters, spread=0.5, seed=0, out=out)
        out.flush()
        del out
        tmp.rename(path)
    return path


def _line(label: str, what: dict[str, Any]) -> None:
    print(f"  {label:<22} " + ", ".join(f"{k}={v}" for k, v in what.items()), flush=True)


def check_index(factory: str, keys_path: Path, queries: np.ndarray, truth: np.ndarray, work: Path,
                use_gpu: str) -> dict[str, Any]:
    """Build, load and search one store; print and return what ran where."""
    import torch

    from datastore import Datastore, write_datastore

    keys = np.load(keys_path, mmap_mode="r")
    out = work / f"store-{factory.replace(',', '_')}"
    started = time.perf_counter()
    write_datastore(out, keys_path, np.zeros(len(keys), dtype=np.int32), factory=factory, use_gpu=use_gpu,
                    overwrite=True)
    written = time.perf_counter() - started
    recorded = json.loads((out / "datastore.json").read_text())["index"]
    print(f"\n{factory}: {len(keys):,} entries of dim {keys.shape[1]}", flush=True)
    _line("built (datastore.json)", {name: recorded.get(name) for name in (
        "built_on_gpu", "type", "nlist", "nprobe", "code_size", "rerank", "trained_on", "train_seconds",
        "build_seconds", "bytes_per_entry")} | {"write_datastore_s": round(written, 1)})
    for message in recorded.get("fallbacks", []):
        print(f"  build fallback: {message}")
    started = time.perf_counter()
    retriever = Datastore.load(out).retriever(use_gpu=use_gpu)
    loaded_s = time.perf_counter() - started
    state = retriever.state
    _line("loaded (retriever)", {name: state.get(name) for name in ("on_gpu", "mapped", "type", "nprobe",
                                                                    "replicas")} | {"load_s": round(loaded_s, 2)})
    for message in state.get("fallbacks", []):
        print(f"  load fallback: {message}")
    print(f"  searches with: {retriever.description}")
    retriever.search(torch.from_numpy(queries[:STEP_ROWS]), K)  # warm-up (GPU kernels, page cache)
    times = []
    for start in range(0, len(queries) - STEP_ROWS + 1, STEP_ROWS):
        t = time.perf_counter()
        retriever.search(torch.from_numpy(queries[start:start + STEP_ROWS]), K)
        times.append(time.perf_counter() - t)
    found = retriever.search(torch.from_numpy(queries), K).indices.numpy()
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    result = {"factory": factory, "entries": len(keys), "built_on_gpu": recorded.get("built_on_gpu"),
              "searched_on_gpu": state.get("on_gpu"), "recorded": recorded, "loaded": state,
              "ms_per_step_160": round(1000 * float(np.median(times)), 2) if times else None,
              "recall_at_16": round(recall, 4), "build_fallbacks": recorded.get("fallbacks", []),
              "load_fallbacks": state.get("fallbacks", [])}
    _line("searched", {"ms_per_step_160": result["ms_per_step_160"], "steps": len(times),
                       f"recall@16 ({len(queries)} queries)": result["recall_at_16"]})
    return result


def run_index(args: argparse.Namespace) -> int:
    import faiss

    from datastore.index import StreamedExactIndex, gpu_count, sized_factory
    from datastore.testing import mixture_keys

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}: {gpu_count(args.gpu)} GPU(s) usable, "
          f"{faiss.omp_get_max_threads()} CPU threads", flush=True)
    started = time.perf_counter()
    keys_path = _keys(work, args.entries, args.dim, args.clusters)
    print(f"keys: {args.entries:,} x {args.dim} float16 in {time.perf_counter() - started:.1f} s ({keys_path})")
    queries = mixture_keys(args.queries, args.dim, clusters=args.clusters, spread=0.5, seed=0,
                           draw_seed=1).astype(np.float32)
    started = time.perf_counter()
    _, truth = StreamedExactIndex(np.load(keys_path, mmap_mode="r")).search(queries, K)
    print(f"exact neighbours of {args.queries} queries (CPU, streamed): {time.perf_counter() - started:.1f} s")
    results = []
    for codec in (f"PQ{args.pq}", "Flat"):
        factory = sized_factory(args.entries, args.dim, codec)
        results.append(check_index(factory, keys_path, queries, truth, work, args.gpu))
        if not args.keep:
            import shutil

            shutil.rmtree(work / f"store-{factory.replace(',', '_')}", ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    low = [r["factory"] for r in results if r["recall_at_16"] < args.min_recall]
    if low:
        print(f"recall@16 below {args.min_recall}: {', '.join(low)}")
    return 1 if low else 0


def run_where(args: argparse.Namespace) -> int:
    import torch

    from datastore import Datastore
    from t2m.decoding.translator import Translator

    store = Datastore.load(args.store)
    build, index = store.meta.get("build", {}), store.meta.get("index", {})
    print(f"store {store.path}: {store.count:,} entries of dim {store.dim}")
    _line("keys computed on", {"device": build.get("device"), "dtype": build.get("dtype"),
                               "tokens_per_second": build.get("tokens_per_second")})
    _line("index built", {"factory": index.get("factory"), "built_on_gpu": index.get("built_on_gpu"),
                          "build_seconds": index.get("build_seconds"), "fallbacks": len(index.get("fallbacks", []))})
    retriever = store.retriever()  # as t2m translate --knn loads it
    _line("index searched", {"on_gpu": retriever.state.get("on_gpu"), "mapped": retriever.state.get("mapped"),
                             "type": retriever.state.get("type"), "nprobe": retriever.state.get("nprobe")})
    for message in index.get("fallbacks", []) + retriever.state.get("fallbacks", []):
        print(f"  fallback: {message}")
    translator = Translator.from_pretrained(args.model)  # as t2m translate loads the model (no device option)
    device = next(translator.model.parameters()).device
    _line("translate model on", {"device": str(device), "cuda_available": torch.cuda.is_available()})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="1M-entry stores from arrays: build, load, search")
    index.add_argument("--entries", type=int, default=1_000_000)
    index.add_argument("--dim", type=int, default=256)
    index.add_argument("--pq", type=int, default=64, help="PQ bytes per code")
    index.add_argument("--clusters", type=int, default=2048)
    index.add_argument("--queries", type=int, default=320)
    index.add_argument("--gpu", default="auto", choices=["auto", "yes", "no"])
    index.add_argument("--min-recall", type=float, default=0.9)
    index.add_argument("--work", default="/tmp/t2m-gpu-check")
    index.add_argument("--json", default=None)
    index.add_argument("--keep", action="store_true")
    where = commands.add_parser("where", help="where a t2m datastore build / translate --knn ran")
    where.add_argument("--store", required=True)
    where.add_argument("--model", default=None)
    args = parser.parse_args()
    if getattr(args, "gpu", None) in ("yes", "no"):
        args.gpu = args.gpu == "yes"
    return run_index(args) if args.command == "index" else run_where(args)


if __name__ == "__main__":
    raise SystemExit(main())
