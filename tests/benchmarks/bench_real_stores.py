"""Stores of a whole training split, measured: build throughput, size, index recall, kNN decoding time.

    python tests/benchmarks/bench_real_stores.py --model CKPT --store DIR [--store DIR ...] \
        [--sample-every 16] [--rows 40] [--beams 5] [--queries 2000] [--json OUT.json]

Per store (built by ``t2m datastore build``; its task, split and batching are read from its datastore.json):

1. build: entries, bytes on disk, the build's wall time (``build.seconds``: teacher-forced pass, merge,
   index; or ``--build-seconds`` for a store built before that was recorded), entries per second;
   against a bare teacher-forced forward (``model(**batch)``: LM head and loss included, under the
   build's precision) of the stock model and of the model as the build runs it (its kernels installed),
   and the build's key extraction (:func:`datastore.build.batch_entries`), over every
   ``--sample-every``-th batch of the very batches the build ran (:func:`t2m.knn.store.task_batches`),
   in turn batch by batch so all see the same machine load;
2. index: recall@k of the store's index at its recorded nprobe against exact search streamed over the
   memory-mapped keys (:class:`datastore.index.StreamedExactIndex`), the queries being decoder states of
   test rows (teacher-forced, read with their neighbours as ``t2m translate`` reads them); milliseconds per
   search of 160 queries (a decoding step of 32 rows x beam 5) through ``Datastore.load(...).retriever()``
   on one faiss thread, and the codes scanned per query;
3. decoding: beam search over the first ``--rows`` test rows, the model alone and with kNN-MT (the
   store's k, λ, T), batch by batch in turn, after the index file was read once (its mapped pages in the
   page cache, as in a long run); the wall-time ratio, and per output token (kNN-MT changes the outputs,
   and longer outputs take more steps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def versions() -> dict:
    import faiss
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "faiss": faiss.__version__,
            "threads": torch.get_num_threads()}


def store_batches(store, model_dir: str):
    """The store's model, tokenizer, checkpoint info and the batches its build ran."""
    from t2m.data import training_records
    from t2m.knn.store import subset_rows, task_batches
    from t2m.model.checkpoint import load_model

    data = store.meta["data"]
    model, tokenizer, info = load_model(model_dir, device="cpu")
    records, _ = training_records(None, data.get("setting", "auto"), data.get("dev_size"))
    rows = subset_rows(len(records), float(data.get("fraction", 1.0)))
    batches, _ = task_batches(tokenizer, info, store.task, records, rows, batch_size=int(data["batch_size"]),
                              max_source_len=int(data["max_source_len"]), max_target_len=int(data["max_target_len"]))
    return model.eval(), tokenizer, info, batches


def bench_build(store, model, batches, every: int, build_seconds: float | None) -> dict:
    """Bare forward of the stock model, bare forward of the model as the build runs it (its kernels
    installed: :func:`t2m.model.kernels.install`) and the build's key extraction, in turn per batch."""
    import copy

    from datastore.build import batch_entries
    from datastore.hooks import StateCapture
    from t2m.model.kernels import install

    build = store.meta["build"]
    dtype = {"bfloat16": torch.bfloat16}.get(build.get("compute_dtype"))
    fast = copy.deepcopy(model)
    install(fast, evaluation=True)
    fast.eval()
    seconds_of = {"stock forward": 0.0, "forward": 0.0, "key extraction": 0.0}
    entries = 0
    picks = list(range(0, len(batches), every))
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        for n, i in enumerate(picks):
            batch = batches[i]
            entries += int((batch["labels"] != -100).sum())
            names = list(seconds_of)
            for name in names[n % 3:] + names[:n % 3]:  # a different one first each batch
                start = time.perf_counter()
                if name == "key extraction":
                    with StateCapture(fast, store.layer, stop=True) as capture:
                        batch_entries(fast, batch, capture, model.config.pad_token_id)
                else:
                    (model if name == "stock forward" else fast)(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
                seconds_of[name] += time.perf_counter() - start
    seconds = build_seconds or build.get("seconds")
    forward_rate = entries / seconds_of["forward"]
    from t2m.bench.stores import folder_bytes

    out = {"entries": store.count, "dim": store.dim, "bytes": folder_bytes(store.path),
           "index": {k: store.meta["index"].get(k) for k in ("factory", "type", "nlist", "nprobe", "bytes_per_entry",
                                                             "build_seconds", "train_size")},
           "compute_dtype": build.get("compute_dtype"), "compute_seconds": build.get("compute_seconds"),
           "merge_seconds": build.get("merge_seconds"), "build_seconds": seconds,
           "sampled_batches": len(picks), "of_batches": len(batches), "sampled_entries": entries,
           "stock_forward_entries_per_s": round(entries / seconds_of["stock forward"], 1),
           "bare_forward_entries_per_s": round(forward_rate, 1),
           "key_extraction_entries_per_s": round(entries / seconds_of["key extraction"], 1)}
    if seconds:
        out["build_entries_per_s"] = round(store.count / seconds, 1)
        out["build_vs_bare_forward"] = round(store.count / seconds / forward_rate, 3)
        out["build_vs_stock_forward"] = round(store.count / seconds / out["stock_forward_entries_per_s"], 3)
    return out


def test_sources(store, rows: int):
    from t2m.data import load_chebi20_records
    from t2m.tasks import source_and_target

    records = load_chebi20_records(None, "official").test[:rows]
    pairs = [source_and_target(r["smiles"], r["description"], store.task) for r in records]
    return [s for s, _ in pairs], [t for _, t in pairs]


def bench_index(store, model, tokenizer, info, queries: int, k: int = 16, step: int = 160,
                nprobes: list[int] | None = None) -> dict:
    """Recall@k of the store's index for decoder states of test rows, against exact search; with
    ``nprobes``, also at each of those nprobe values (``by_nprobe``)."""
    from datastore.build import batch_entries
    from datastore.hooks import StateCapture
    from datastore.index import StreamedExactIndex
    from t2m.decoding.translator import Translator
    from t2m.knn.store import encode_pairs

    translator = Translator(model, tokenizer, info)
    sources, targets = test_sources(store, max(8, queries // 40))
    sources = translator.model_inputs(sources, store.task)
    keys = []
    with torch.inference_mode(), StateCapture(model, store.layer, stop=True) as capture:
        for start in range(0, len(sources), 16):
            batch = encode_pairs(tokenizer, sources[start:start + 16], targets[start:start + 16], task=store.task,
                                 prompt_style=info.prompt_style, max_source_len=512, max_target_len=512)
            keys.append(batch_entries(model, batch, capture, model.config.pad_token_id)["keys"])
    q = np.concatenate(keys).astype(np.float32)
    q = q[np.random.default_rng(0).permutation(len(q))[:queries]]
    begin = time.perf_counter()
    _, exact = StreamedExactIndex(store.keys).search(q, k)
    exact_s = time.perf_counter() - begin
    result = {"queries": len(q), "k": k, **_search_figures(store.retriever(), q, exact, k, step),
              "exact_search_s": round(exact_s, 1)}
    if nprobes:
        result["by_nprobe"] = [{"nprobe": n, **_search_figures(store.retriever(nprobe=n), q, exact, k, step)}
                               for n in nprobes]
    return result


def _search_figures(retriever, q: np.ndarray, exact: np.ndarray, k: int, step: int) -> dict:
    """recall@k against ``exact``, median ms per search of ``step`` queries, codes scanned per query."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # search timed on one thread, as bench_scale.py times it
    stats = getattr(faiss.cvar, "indexIVF_stats", None)
    times, found, scanned = [], [], []
    for start in range(0, len(q), step):
        if stats is not None:
            stats.reset()
        begin = time.perf_counter()
        found.append(retriever.search(torch.from_numpy(q[start:start + step]), k).indices.numpy())
        times.append(time.perf_counter() - begin)
        if stats is not None:
            scanned.append(stats.ndis / len(q[start:start + step]))
    faiss.omp_set_num_threads(threads)
    ids = np.concatenate(found)
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact)]))
    return {f"recall@{k}": round(recall, 4), "ms_per_search_of_160": round(1000 * float(np.median(times)), 2),
            "codes_scanned_per_query": round(float(np.mean(scanned))) if scanned else None,
            "retriever": getattr(retriever, "state", None) and {k_: v for k_, v in retriever.state.items()
                                                                 if k_ in ("type", "nprobe", "mapped", "on_gpu")}}


def read_through(folder, block: int = 64 << 20) -> None:
    """Read every index file of a store folder once, so that its memory-mapped pages are in the page cache
    (a long decoding run reaches that state after its first steps; a 40-row run would time disk reads)."""
    from pathlib import Path

    for path in sorted(Path(folder).glob("*.faiss")):
        with open(path, "rb") as handle:
            while handle.read(block):
                pass


def bench_decode(store, model, tokenizer, info, rows: int, beams: int, batch: int, pairs: int | None = None) -> dict:
    """The model alone against the model with kNN-MT (the store's parameters; ``pairs`` N: each input's N
    nearest training pairs' entries searched instead of the whole store)."""
    from datastore.params import PartialKNNParams
    from t2m.bench.systems import count_output_tokens
    from t2m.decoding.translator import Translator
    from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints

    translator = Translator(model, tokenizer, info)
    sources, _ = test_sources(store, rows)
    decoding = DecodingOptions(num_beams=beams, batch_size=batch)
    constraints = SmilesConstraints()
    knn = RetrievalOptions(store, None if pairs is None else PartialKNNParams(pairs=pairs))
    read_through(store.path)  # the index's pages into the page cache: decoding timed in its steady state
    translator.translate(sources[:2], store.task, decoding, constraints, knn)  # warm-up: load the index
    translator.translate(sources[:2], store.task, decoding, constraints)
    seconds = {"model": 0.0, "model+knn": 0.0}
    tokens = {"model": 0, "model+knn": 0}
    same = 0
    for n, start in enumerate(range(0, len(sources), batch)):
        part = sources[start:start + batch]
        outputs = {}
        for name in (("model", "model+knn") if n % 2 == 0 else ("model+knn", "model")):
            begin = time.perf_counter()
            outputs[name] = [r.output for r in translator.translate(part, store.task, decoding, constraints,
                                                                     knn if name == "model+knn" else None)]
            seconds[name] += time.perf_counter() - begin
            tokens[name] += count_output_tokens(tokenizer, outputs[name])
        same += sum(a == b for a, b in zip(outputs["model"], outputs["model+knn"]))
    params = store.knn_params
    return {"rows": len(sources), "beams": beams, "batch": batch,
            "knn": {"k": params.k, "lambda": params.lambda_, "temperature": params.temperature,
                    "pairs": params.pairs if pairs is None else pairs},
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "knn_vs_model_time": round(seconds["model+knn"] / seconds["model"], 3), "output_tokens": tokens,
            "knn_vs_model_time_per_output_token": round(seconds["model+knn"] / tokens["model+knn"]
                                                        / (seconds["model"] / tokens["model"]), 3),
            "same_outputs": same}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--store", action="append", required=True)
    parser.add_argument("--build-seconds", action="append", type=float, default=None,
                        help="the build's wall time per --store, for stores whose datastore.json lacks build.seconds")
    parser.add_argument("--sample-every", type=int, default=16, help="time every N-th batch of the build")
    parser.add_argument("--rows", type=int, default=40, help="test rows decoded with and without kNN (0: skip)")
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--queries", type=int, default=2000, help="test decoder states searched for recall (0: skip)")
    parser.add_argument("--nprobes", default=None, help="comma list: recall and speed also at these nprobe values")
    parser.add_argument("--knn-pairs", default="", help="also decode with each input's N nearest pairs' entries "
                        "only, for each N of this comma list")
    parser.add_argument("--parts", default="build,index,decoding", help="what to measure, comma list")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from datastore.store import Datastore

    results = {"versions": versions(), "command": " ".join(sys.argv), "stores": []}
    for n, path in enumerate(args.store):
        store = Datastore.load(path)
        model, tokenizer, info, batches = store_batches(store, args.model)
        given = args.build_seconds[n] if args.build_seconds else None
        result = {"store": str(path), "task": store.task}
        if "build" in args.parts:
            result["build"] = bench_build(store, model, batches, args.sample_every, given)
            print(json.dumps(result), flush=True)
        if args.queries and "index" in args.parts:
            result["index"] = bench_index(store, model, tokenizer, info, args.queries,
                                          nprobes=[int(n) for n in args.nprobes.split(",")] if args.nprobes else None)
            print(json.dumps(result["index"]), flush=True)
        if args.rows and "decoding" in args.parts:
            result["decoding"] = bench_decode(store, model, tokenizer, info, args.rows, args.beams, args.batch_size)
            print(json.dumps(result["decoding"]), flush=True)
            for pairs in [int(p) for p in args.knn_pairs.split(",") if p]:
                result[f"decoding_pairs_{pairs}"] = bench_decode(store, model, tokenizer, info, args.rows, args.beams,
                                                                 args.batch_size, pairs)
                print(json.dumps(result[f"decoding_pairs_{pairs}"]), flush=True)
        results["stores"].append(result)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
