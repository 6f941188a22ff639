"""Datastores of millions of entries (issue 30): synthetic keys through ``write_datastore`` and the real query
path (``Datastore.load(...).retriever().search``), one thread.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_scale.py --sizes 100000,300000,1000000 --dim 256 \
        [--codecs auto,auto:PQ] [--work /tmp/scale-bench] [--json docs/datastore_scale.json]

For each size N and index (``auto``: :func:`datastore.index.sized_factory`; ``auto:PQ`` its PQ variant,
re-ranked from the keys) it measures
- build: seconds and µs per entry of training and of adding (``write_datastore``'s index build);
- size: index bytes per entry against the codec's theory (codes + 8-byte ids per entry, the float32
  centroids, the HNSW quantizer's level-0 links);
- load: seconds to ``Datastore.load`` + ``retriever()`` in a fresh process (memory-mapped index);
- memory: two worker processes (what ``--jobs 2`` workers do: load the store, take its retriever, search
  ``--worker-steps`` steps of 160 queries): their anonymous (private) memory growth, RSS and PSS, and the
  RSS / PSS of the index file's mapping;
- speed: ms per decoding step of 40 and 160 queries, k 16, in this process (one faiss thread, and two:
  ``ms_per_step_*_2threads``), after one untimed pass over the same queries (the steady state: the index
  pages they touch are in the page cache), the codes scanned per query (faiss's IVF statistics);
- recall@16 of ``--recall-queries`` queries against exact search streamed over the memory-mapped keys.

``--build-threads N`` builds with N faiss threads (µs per entry are then of N threads; default 1).
``--keep`` keeps each store and ``--reuse`` measures a kept store of the same N and index again instead of
building it (its build figures are the ones recorded when it was built): build on a busy machine, measure
on a quiet one.

The keys are a Gaussian mixture (:func:`datastore.testing.mixture_keys`, ``--clusters`` centres, spread
``--spread``), or one fitted to a real store's keys (``--fit STORE --mixture FILE`` fits and saves it:
:func:`datastore.testing.fit_mixture`; ``--mixture FILE`` then draws from it). Queries are fresh draws of
the same mixture. Against the real store itself: ``tests/benchmarks/bench_real_stores.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 16


def _smaps(index_name: str = "index.faiss") -> dict[str, float]:
    """MB: this process's anonymous memory, RSS, PSS, and the RSS / PSS of ``index_name``'s mapping."""
    found = {"anonymous": 0.0, "rss": 0.0, "pss": 0.0, "index_rss": 0.0, "index_pss": 0.0}
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Anonymous", "Rss", "Pss"):
                found[name.lower()] = int(rest.split()[0]) / 1024
    current = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                current = fields[5] if len(fields) >= 6 else None
            elif current and current.endswith(index_name) and fields[0] in ("Rss:", "Pss:"):
                found["index_" + fields[0][:-1].lower()] += int(fields[1]) / 1024
    return found


def _mixture(args: argparse.Namespace):
    """The fitted mixture of ``--mixture`` (None: the random one of ``--clusters`` and ``--spread``)."""
    from datastore.testing import Mixture

    return Mixture.load(args.mixture) if args.mixture else None


def _queries(count: int, args: argparse.Namespace, seed: int) -> np.ndarray:
    from datastore.testing import mixture_keys

    return mixture_keys(count, args.dim, clusters=args.clusters, spread=args.spread, seed=0, draw_seed=seed,
                        mixture=_mixture(args)).astype(np.float32)


def _worker(path: str, queries: np.ndarray, steps: int, nprobe: int | None, barrier: Any, results: Any) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    from datastore import Datastore

    before = _smaps()
    started = time.perf_counter()
    retriever = Datastore.load(path).retriever(nprobe=nprobe)
    load_seconds = time.perf_counter() - started
    for step in range(steps):
        retriever.search(torch.from_numpy(queries[(step % 4) * 160:(step % 4 + 1) * 160]), K)
    barrier.wait()
    after = _smaps()
    barrier.wait()
    results.put({"load_seconds": round(load_seconds, 4), "mapped": retriever.state.get("mapped"),
                 **{f"{name}_mb": round(after[name] - (before[name] if name in ("anonymous", "rss", "pss") else 0), 1)
                    for name in after}})


def _two_workers(path: Path, queries: np.ndarray, steps: int, nprobe: int | None) -> list[dict]:
    from datastore.testing import run_in_two_processes

    return run_in_two_processes(_worker, (str(path), queries, steps, nprobe), timeout=1800)


def _theory_bytes(meta: dict, dim: int) -> int:
    """What the index's codec takes: codes and 8-byte ids per entry, float32 centroids, HNSW level-0 links,
    PQ codebooks (256 float32 centroids per sub-vector)."""
    count, nlist, code = int(meta["count"]), int(meta.get("nlist") or 0), int(meta.get("code_size") or 0)
    links = nlist * 2 * 32 * 4 if meta.get("quantizer") == "IndexHNSWFlat" else 0
    codebooks = 256 * dim * 4 if "PQ" in meta["factory"] else 0
    return count * (code + (8 if nlist else 0)) + nlist * dim * 4 + links + codebooks


def _step_ms(retriever: Any, queries: np.ndarray, rows: int, budget: float = 20.0, warm: bool = True
             ) -> dict[str, float]:
    import faiss
    import torch

    # one untimed pass first (``warm``): the memory-mapped index's pages these queries touch are read from
    # disk once (a decoding run is timed in its steady state, not while the page cache fills)
    for step in range(0, len(queries) // rows if warm else 0):
        retriever.search(torch.from_numpy(queries[step * rows:(step + 1) * rows]), K)
    times, scanned = [], []
    started = time.perf_counter()
    for step in range(0, len(queries) // rows):
        batch = torch.from_numpy(queries[step * rows:(step + 1) * rows])
        stats = getattr(faiss.cvar, "indexIVF_stats", None)
        if stats is not None:
            stats.reset()
        t = time.perf_counter()
        retriever.search(batch, K)
        times.append(time.perf_counter() - t)
        if stats is not None:
            scanned.append(stats.ndis / rows)
        if time.perf_counter() - started > budget and len(times) >= 5:
            break
    return {f"ms_per_step_{rows}": round(1000 * float(np.median(times)), 2), "steps_timed": len(times),
            "codes_scanned_per_query": round(float(np.mean(scanned)), 1) if scanned else None}


def _recall(store: Any, retriever: Any, queries: np.ndarray, truth: np.ndarray | None = None) -> float:
    import torch

    from datastore.index import StreamedExactIndex

    if truth is None:
        _, truth = StreamedExactIndex(store.keys).search(queries, K)
    found = retriever.search(torch.from_numpy(queries), K).indices.numpy()
    return round(float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])), 4)


def _nprobe_sweep(path: Path, recall_queries: np.ndarray, step_queries: np.ndarray, nprobes: list[int]
                  ) -> list[dict[str, Any]]:
    """recall@16, ms per step of 40 queries and codes scanned per query at each nprobe (``--nprobes``)."""
    from datastore import Datastore

    from datastore.index import StreamedExactIndex

    store = Datastore.load(path)
    _, truth = StreamedExactIndex(store.keys).search(recall_queries, K)
    rows = []
    for nprobe in nprobes:
        retriever = store.retriever(nprobe=nprobe)
        row = {"nprobe": nprobe, "recall_at_16": _recall(store, retriever, recall_queries, truth),
               **_step_ms(retriever, step_queries, 40, budget=8.0)}
        print(json.dumps({"entries": store.count, **row}), flush=True)
        rows.append(row)
    return rows


def _keys_file(work: Path, count: int, args: argparse.Namespace) -> Path:
    from datastore.testing import mixture_keys

    shape = f"fitted-{Path(args.mixture).stem}" if args.mixture else f"{args.clusters}-{args.spread}"
    path = work / f"keys-{count}-{args.dim}-{shape}.npy"
    if not path.is_file():
        out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float16,
                                        shape=(count, args.dim))
        mixture_keys(count, args.dim, clusters=args.clusters, spread=args.spread, seed=0, out=out,
                     mixture=_mixture(args))
        out.flush()
        del out
        path.with_suffix(".tmp.npy").rename(path)
    return path


def _built(out: Path, count: int) -> dict[str, Any] | None:
    """What ``--reuse`` takes from a kept store of ``count`` entries: its build record, or None (build it)."""
    try:
        meta = json.loads((out / "datastore.json").read_text())
        built = json.loads((out / "bench_build.json").read_text())
    except (OSError, ValueError):
        return None
    return {**built, "reused": True} if int(meta.get("count", -1)) == count else None


def run_one(count: int, codec: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import faiss

    from datastore import Datastore, write_datastore
    from datastore.index import default_nprobe

    keys = _keys_file(work, count, args)
    values = np.zeros(count, dtype=np.int32)
    out = work / f"store-{count}-{codec.replace(',', '_')}"
    built = _built(out, count) if args.reuse else None
    if built is None:
        faiss.omp_set_num_threads(args.build_threads)
        started = time.perf_counter()
        write_datastore(out, keys, values, factory=codec.replace(":", ","), knn=None, auto_temperature=False,
                        overwrite=True, use_gpu=False)
        built = {"write_datastore_seconds": round(time.perf_counter() - started, 1), "build_threads": args.build_threads,
                 "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (out / "bench_build.json").write_text(json.dumps(built) + "\n")
    faiss.omp_set_num_threads(1)
    store = Datastore.load(out)
    meta = store.meta["index"]
    # `auto` is measured at today's default nprobe for its list count (a kept store records the default of
    # the day it was built)
    nprobe = default_nprobe(int(meta["nlist"])) if codec.startswith("auto") and meta.get("nlist") else None
    result: dict[str, Any] = {"entries": count, "dim": args.dim, "requested": codec, "factory": meta["factory"],
                              "nlist": meta.get("nlist"), "nprobe": nprobe or meta.get("nprobe"), "rerank": meta.get("rerank"),
                              "trained_on": meta["trained_on"], **built,
                              "train_seconds": meta["train_seconds"],
                              "add_seconds": round(meta["build_seconds"] - meta["train_seconds"], 3),
                              "index_bytes": meta["bytes"], "bytes_per_entry": meta["bytes_per_entry"]}
    result["train_us_per_entry"] = round(1e6 * result["train_seconds"] / count, 2)
    result["add_us_per_entry"] = round(1e6 * result["add_seconds"] / count, 2)
    theory = _theory_bytes(meta, args.dim)
    result["theory_bytes"] = theory
    result["bytes_vs_theory"] = round(meta["bytes"] / theory, 4)
    queries = _queries(max(args.recall_queries, 640, args.step_queries), args, 1)
    if args.nprobes:
        result["nprobe_sweep"] = _nprobe_sweep(out, queries[:args.recall_queries],
                                               _queries(args.step_queries, args, 2),
                                               [int(n) for n in args.nprobes.split(",")])
    if args.no_workers:
        return result
    result["workers"] = _two_workers(out, queries, args.worker_steps, nprobe)
    result["two_workers_pss_of_index_mb"] = round(sum(w["index_pss_mb"] for w in result["workers"]), 1)
    result["index_mb"] = round(meta["bytes"] / 2 ** 20, 1)
    started = time.perf_counter()
    retriever = Datastore.load(out).retriever(nprobe=nprobe)
    result["load_seconds_here"] = round(time.perf_counter() - started, 4)
    steps = _queries(args.step_queries, args, 2)
    result.update(_step_ms(retriever, steps, 40))  # warms the pages these queries touch; the rest reuse them
    result.update({k: v for k, v in _step_ms(retriever, steps, 160, warm=False).items()
                   if k != "codes_scanned_per_query"})
    faiss.omp_set_num_threads(2)  # a step's queries searched by two threads
    for rows in (40, 160):
        result[f"ms_per_step_{rows}_2threads"] = _step_ms(retriever, steps, rows, warm=False)[f"ms_per_step_{rows}"]
    faiss.omp_set_num_threads(1)
    result["recall_at_16"] = _recall(store, retriever, queries[:args.recall_queries])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--codecs", default="auto", help="comma list: auto, auto:PQ, or factory strings with ':' for ','")
    parser.add_argument("--clusters", type=int, default=2048)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--mixture", default=None,
                        help="draw keys and queries from this fitted mixture (.npz; --fit makes one) instead of the "
                             "random one of --clusters and --spread; --dim is taken from it")
    parser.add_argument("--fit", default=None, metavar="STORE",
                        help="fit a mixture of --clusters Gaussians to STORE's keys, save it as --mixture and stop")
    parser.add_argument("--recall-queries", type=int, default=320)
    parser.add_argument("--step-queries", type=int, default=3200, help="queries timed, cut into steps")
    parser.add_argument("--worker-steps", type=int, default=20)
    parser.add_argument("--nprobes", default=None, help="comma list: also sweep these nprobe values (recall, speed)")
    parser.add_argument("--no-workers", action="store_true", help="skip the two-worker memory measurement "
                        "(and everything after it: speed and recall at the default nprobe)")
    parser.add_argument("--work", default="/tmp/scale-bench")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the stores (the keys files are always kept)")
    parser.add_argument("--reuse", action="store_true", help="measure a store kept by an earlier --keep run of the "
                        "same size and index instead of building it")
    parser.add_argument("--build-threads", type=int, default=1, help="faiss threads of the index build (default 1)")
    parser.add_argument("--table", action="store_true", help="print the table of --json's results and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.json).read_text())["results"]))
        return
    import faiss

    faiss.omp_set_num_threads(1)
    if args.fit:
        from datastore import Datastore
        from datastore.testing import fit_mixture

        started = time.perf_counter()
        fitted = fit_mixture(Datastore.load(args.fit).keys, clusters=args.clusters)
        fitted.save(args.mixture)
        print(json.dumps({"fitted": args.fit, "clusters": len(fitted.weights), "dim": fitted.dim,
                          "spread_median": float(np.median(fitted.spreads)),
                          "weight_max": float(fitted.weights.max()), "seconds": round(time.perf_counter() - started, 1)}))
        return
    if args.mixture:
        args.dim = _mixture(args).dim
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": _cpu_model(), "cpus": os.cpu_count(), "faiss": faiss.__version__, "python": platform.python_version(),
               "threads": 1}
    results = json.loads(Path(args.json).read_text())["results"] if args.json and Path(args.json).is_file() else []
    for count in [int(s) for s in args.sizes.split(",")]:
        for codec in args.codecs.split(","):
            result = run_one(count, codec, args, work)
            print(json.dumps(result), flush=True)
            results = [r for r in results if (r["entries"], r["dim"], r["requested"]) != (count, args.dim, codec)]
            results.append(result)
            if args.json:
                Path(args.json).write_text(json.dumps({"machine": machine, "synthetic": {
                    "clusters": args.clusters, "spread": args.spread, "mixture": args.mixture}, "results": results}, indent=1) + "\n")
            if not args.keep:
                import shutil

                shutil.rmtree(work / f"store-{count}-{codec.replace(',', '_')}", ignore_errors=True)


def markdown_table(results: list[dict]) -> str:
    """The results as the table of docs/datastore_scale.md."""
    lines = ["| N | index | train µs/entry | add µs/entry | bytes/entry | vs theory | load s | worker private MB "
             "| index MB | 2 workers' PSS of it MB | ms/step 40 | ms/step 160 | ms/step 40, 2 threads | ms/step 160, 2 threads "
             "| codes/query | recall@16 |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["dim"], r["requested"], r["entries"])):
        workers = r["workers"]
        lines.append(
            f"| {r['entries']:,} | {r['factory']} nprobe {r['nprobe']}{', rerank ' + str(r['rerank']) if r['rerank'] else ''} "
            f"| {r['train_us_per_entry']:.1f} | {r['add_us_per_entry']:.1f} | {r['bytes_per_entry']:.1f} "
            f"| {r['bytes_vs_theory']:.4f} | {max(w['load_seconds'] for w in workers):.3f} "
            f"| {max(w['anonymous_mb'] for w in workers):.1f} | {r['index_mb']:.1f} | {r['two_workers_pss_of_index_mb']:.1f} "
            f"| {r['ms_per_step_40']:.1f} | {r['ms_per_step_160']:.1f} | {_ms(r, 'ms_per_step_40_2threads')} "
            f"| {_ms(r, 'ms_per_step_160_2threads')} | {r['codes_scanned_per_query'] or '–'} "
            f"| {r['recall_at_16']:.3f} |")
    return "\n".join(lines)


def _ms(result: dict, key: str) -> str:
    return f"{result[key]:.1f}" if result.get(key) is not None else "–"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
