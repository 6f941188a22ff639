"""Datastore benchmark: build throughput, index recall / speed / size, decoding cost of kNN.

    python tests/benchmarks/bench_datastore.py --data ../shared/data --task mol2text \
        [--model CHECKPOINT_DIR | --tokenizer TOKENIZER_DIR --preset cpu-small] [--json OUT.json]

Without ``--model`` it uses a randomly initialised T5 of ``--preset`` shape with the given tokenizer:
the timings and sizes are those of a real model of that shape, the recall numbers are on keys of an
untrained model (less clustered than a trained one's, so harder for IVF).

Measures, on the benchmark setting's training pairs (validation.txt minus the dev slice):
1. build: tokens/s of a plain teacher-forced forward (``model(**batch)``) against the datastore's
   per-batch key extraction, alternating batch by batch so both see the same machine load, and the
   wall time of the whole ``build_datastore`` (chunks, merge) without the index;
2. index: for each factory string, build seconds, bytes per entry, search ms per decoding step
   (queries = teacher-forced decoder states of dev rows, ``--step-queries`` at a time = batch x beams),
   recall@k against exact search;
3. decoding: beam search over dev sources with and without kNN (default index and exact), wall time
   ratio and the fraction of outputs identical between the default index and exact search.

Measured (one run, 2-core CPU shared with the lead's training run, so absolute times are contended;
every comparison is interleaved or paired in time), partly trained cpu-small checkpoint (step 400),
text2mol, 3,001 training pairs -> 188,546 entries, d = 256:

    python tests/benchmarks/bench_datastore.py --data ../shared/data/chebi20 --model CKPT --task text2mol \
        --max-len 256 --build-rows 300 --queries 1600 --faiss-threads 1 --decode-rows 32 --decode-tokens 24 \
        --metric-rows 64 --factories "IVF1024,Flat|nprobe=8;IVF1024,Flat|nprobe=16;HNSW32|efSearch=32;HNSW32|efSearch=64;IVF1024,PQ32|nprobe=16" \
        --decode-indexes "HNSW32|efSearch=32;HNSW32|efSearch=64;IVF1024,Flat|nprobe=8"

- build (300 rows, 17,693 tokens): key extraction 1.145x the tokens/s of a plain teacher-forced forward
  (it stops before the LM head); the whole build_datastore (chunks, merge) 1.29x; full store 486 tok/s.
- index, recall@16 vs exact / ms per step of 160 queries / build s / bytes per entry:
  Flat 1.0 / 3,992 / 0.5 / 1,024; IVF1024,Flat nprobe 8: 0.995 / 36 / 11.5 / 1,038; nprobe 16: 0.999 /
  72 / 12.5; HNSW32 ef 32: 0.969 / 38 / 29 / 1,296; ef 64: 0.975 / 52 / 35; IVF1024,PQ32 nprobe 16:
  0.806 / 36 / 174 / 47.
- beam 5, batch 32, 24 tokens, interleaved x2: kNN with IVF1024 nprobe 8 = 1.06x the model alone,
  outputs identical to exact search 32/32; HNSW32 0.96-0.99x, identical 22/32.
- greedy, 64 dev rows, λ 0.5, k 16, T = median nearest distance: Morgan FTS exact 0.2737, IVF 0.2745,
  HNSW32 0.2162 (exact match 0 for all: an early checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _setup(args):
    from t2m.model.checkpoint import load_model, make_config

    if args.model:
        model, tokenizer, info = load_model(args.model)
        args.generate_options = info.decoding_options(args.task)  # the checkpoint's repetition settings
        return model.eval(), tokenizer, info.prompt_style, f"checkpoint {args.model}"
    from transformers import T5ForConditionalGeneration

    from t2m.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(make_config(args.preset, vocab_size=len(tokenizer))).eval()
    return model, tokenizer, "textchem", f"random {args.preset} T5 (untrained), tokenizer {args.tokenizer}"


def _pairs(records, task):
    from t2m.tasks import source_and_target

    pairs = [source_and_target(r["smiles"], r["description"], task) for r in records]
    return [s for s, _ in pairs], [t for _, t in pairs]


def _batches(tokenizer, records, task, prompt_style, batch_size, max_len):
    from functools import partial

    from datastore import PairBatches

    sources, targets = _pairs(records, task)
    encode = partial(_encode, tokenizer, task=task, prompt_style=prompt_style, max_len=max_len)
    return PairBatches(encode, sources, targets, batch_size, sort_by_length=True), sources, targets


def _encode(tokenizer, sources, targets, task, prompt_style, max_len):
    from t2m.decoding.batching import encode_batch

    return encode_batch(tokenizer, sources, targets, task, prompt_style, max_len, max_len)


def bench_build(model, tokenizer, batches, work: Path) -> dict:
    from datastore import build_datastore
    from datastore.build import batch_entries
    from datastore.hooks import StateCapture

    forward_s = extract_s = 0.0
    tokens = 0
    with torch.inference_mode():
        for i in range(len(batches)):
            batch = batches[i]
            tokens += int((batch["labels"] != -100).sum())
            order = (0, 1) if i % 2 == 0 else (1, 0)  # alternate which goes first
            for which in order:
                start = time.perf_counter()
                if which == 0:
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"])
                    forward_s += time.perf_counter() - start
                else:
                    with StateCapture(model, stop=True) as capture:
                        batch_entries(model, batch, capture, model.config.pad_token_id)
                    extract_s += time.perf_counter() - start
    start = time.perf_counter()
    build_datastore(model, batches, work / "train", tokenizer=tokenizer, index_factory="none", progress=False,
                    chunk_batches=8)
    build_s = time.perf_counter() - start
    return {
        "tokens": tokens,
        "plain_forward_tok_s": round(tokens / forward_s, 1),
        "key_extraction_tok_s": round(tokens / extract_s, 1),
        "extraction_vs_forward": round(forward_s / extract_s, 3),
        "build_datastore_wall_s": round(build_s, 2),
        "build_datastore_tok_s": round(tokens / build_s, 1),
        "build_vs_forward": round(forward_s / build_s, 3),
    }


def bench_index(keys: np.ndarray, queries: np.ndarray, factories: list[str], k: int, step: int,
                work: Path) -> list[dict]:
    from datastore.index import build_index, set_search_params

    rows = []
    exact = None
    for factory in ["Flat"] + [f for f in factories if f != "Flat"]:
        spec, _, params = factory.partition("|")  # "IVF512,Flat|nprobe=16"
        options = dict(item.split("=") for item in params.split(";") if item)
        folder = work / f"index_{len(rows)}"
        folder.mkdir()
        meta, index = build_index(keys, folder, spec, progress=False, return_index=True,
                                  nprobe=int(options["nprobe"]) if "nprobe" in options else None,
                                  ef_search=int(options["efSearch"]) if "efSearch" in options else None)
        set_search_params(index, meta.get("nprobe"), meta.get("efSearch"))
        times, found = [], []
        for start in range(0, len(queries), step):
            q = queries[start:start + step]
            t0 = time.perf_counter()
            _, ids = index.search(q, k)
            times.append(time.perf_counter() - t0)
            found.append(ids)
        ids = np.concatenate(found)
        if exact is None:
            exact = ids
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact)]))
        rows.append({"factory": factory, "nprobe": meta.get("nprobe"), "efSearch": meta.get("efSearch"),
                     "build_s": meta["build_seconds"], "bytes_per_entry": meta["bytes_per_entry"],
                     "search_ms_per_step": round(1000 * float(np.median(times)), 2),
                     f"recall@{k}": round(recall, 4)})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(folder)
    return rows


def bench_decode(model, tokenizer, store_dir: Path, sources, task, prompt_style, batch_size: int, beams: int,
                 max_new_tokens: int, k: int, variants: list[str], faiss_threads: list[int], repeats: int = 2,
                 with_exact: bool = True, generate_options: dict | None = None) -> list[dict]:
    """Beam-search wall time without kNN and with kNN through each index variant (and exact search).

    The machine is shared, so the systems are interleaved: every batch is decoded by every system in a
    rotating order, ``repeats`` times, and each system's time is the sum over those same moments.
    Outputs of each variant are compared with exact search's (when ``with_exact``)."""
    from contextlib import nullcontext

    import faiss

    from datastore import Datastore, knn_generation
    from datastore.index import build_index, exact_index, set_search_params
    from datastore.retrieve import Retriever
    from t2m.decoding.batching import encode_batch

    store = Datastore.load(store_dir)
    batches = [encode_batch(tokenizer, sources[i:i + batch_size], None, task, prompt_style)
               for i in range(0, len(sources), batch_size)]
    kwargs = dict(num_beams=beams, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                  **(generate_options or {}))

    def one(retriever, batch):
        from t2m.decoding.fast import fast_decoding

        context = nullcontext(None) if retriever is None else knn_generation(
            model, store, k=k, lambda_=0.5, temperature=10.0, retriever=retriever, check=False)
        start = time.perf_counter()
        # beam search as t2m.decoding.translator.Translator runs it (no per-beam copies of the source keys/values)
        with context as processors, fast_decoding(model, beams) as beam_options:
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 logits_processor=processors, **beam_options, **kwargs)
        return time.perf_counter() - start, out

    built = {}
    systems: dict[str, Any] = {"model": None}
    for variant in variants:
        spec, _, params = variant.partition("|")
        options = dict(item.split("=") for item in params.split(";") if item)
        if spec not in built:
            built[spec] = build_index(store.keys, None, spec, progress=False, return_index=True)[1]
        systems[variant] = (spec, options)
    exact_out = None
    rows = []
    with torch.inference_mode():
        if with_exact:
            exact = Retriever(exact_index(store.keys), store.values, "Flat")
            exact_s, exact_out = 0.0, []
            for batch in batches:
                seconds, out = one(exact, batch)
                exact_s += seconds
                exact_out.append(out)
        for threads in faiss_threads:
            faiss.omp_set_num_threads(threads)
            names = list(systems)
            seconds = {name: 0.0 for name in names}
            outs: dict[str, list] = {name: [] for name in names}
            for repeat in range(repeats):
                for b, batch in enumerate(batches):
                    shift = (repeat + b) % len(names)
                    for name in names[shift:] + names[:shift]:
                        if name == "model":
                            retriever = None
                        else:
                            spec, options = systems[name]
                            set_search_params(built[spec], options.get("nprobe"), options.get("efSearch"))
                            retriever = Retriever(built[spec], store.values, name)
                        t, out = one(retriever, batch)
                        seconds[name] += t
                        if repeat == 0:
                            outs[name].append(out)
            for name in names[1:]:
                row = {"index": name, "faiss_threads": threads, "base_s": round(seconds["model"], 2),
                       "knn_s": round(seconds[name], 2), "knn_over_base": round(seconds[name] / seconds["model"], 3)}
                if exact_out is not None:
                    same = sum(int(torch.equal(a[i], b[i])) for a, b in zip(outs[name], exact_out)
                               for i in range(a.shape[0]))
                    row["identical_outputs_vs_exact"] = round(same / len(sources), 4)
                    row["exact_s_single_pass"] = round(exact_s, 2)
                row.update({"rows": len(sources), "batch": batch_size, "beams": beams,
                            "new_tokens": max_new_tokens, "repeats": repeats})
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def bench_metric(model, tokenizer, store_dir: Path, rows, task, prompt_style, batch_size: int, k: int,
                 variants: list[str], beams: int = 5, params_from: Path | None = None,
                 generate_options: dict | None = None) -> list[dict]:
    """Decode ``rows`` to the end (``beams``) with kNN through each index variant and through exact search:
    the task metric of each and the fraction of outputs identical to exact search's. k, λ and T come from
    the tuned store in ``params_from`` when given, else k, λ 0.5 and T = the median nearest distance."""
    from datastore import Datastore
    from datastore.index import build_index, exact_index, set_search_params
    from datastore.retrieve import Retriever
    from datastore.params import KNNParams
    from t2m.knn.tune import decode, dev_metric

    store = Datastore.load(store_dir)
    sources, references = _pairs(rows, task)
    exact = Retriever(exact_index(store.keys), store.values, "Flat")
    if params_from is not None:
        tuned = Datastore.load(params_from).knn_params
        candidate = KNNParams(tuned.k, tuned.lambda_, tuned.temperature)
    else:
        # T on the scale of the keys: the median squared distance of dev states to their nearest key
        dev_keys = np.load(store_dir.parent / "dev" / "keys.npy", mmap_mode="r")[:512].astype(np.float32)
        d1 = float(np.median(exact.search(torch.from_numpy(dev_keys), 1).distances.numpy()))
        candidate = KNNParams(k, 0.5, float(f"{d1:.3g}"))
    results, outputs = [], {}
    for variant in ["exact"] + variants:
        if variant == "exact":
            retriever = exact
        else:
            spec, _, params = variant.partition("|")
            options = dict(item.split("=") for item in params.split(";") if item)
            index = build_index(store.keys, None, spec, progress=False, return_index=True)[1]
            set_search_params(index, options.get("nprobe"), options.get("efSearch"))
            retriever = Retriever(index, store.values, variant)
        start = time.perf_counter()
        outputs[variant] = decode(model, tokenizer, store, sources, task, prompt_style, candidate, retriever,
                                  num_beams=beams, batch_size=batch_size, progress=False,
                                  generate_options=generate_options)
        seconds = time.perf_counter() - start
        _, metric = dev_metric(task, references, outputs[variant])
        same = sum(a == b for a, b in zip(outputs[variant], outputs["exact"])) / len(sources)
        results.append({"index": variant, "rows": len(sources), "beams": beams, "decode_s": round(seconds, 1),
                        **metric, "identical_outputs_vs_exact": round(same, 4), "lambda": candidate.lambda_,
                        "k": candidate.k, "temperature": candidate.temperature,
                        "generate_options": generate_options or {}})
        if variant != "exact":
            results[-1]["metric_minus_exact"] = {key: round(metric[key] - results[0][key], 4) for key in metric}
        print(json.dumps(results[-1]), flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding chebi20/ (default: T2M_SHARED_DATA)")
    parser.add_argument("--task", default="mol2text", choices=("text2mol", "mol2text"))
    parser.add_argument("--model", default=None, help="checkpoint directory (default: random --preset model)")
    parser.add_argument("--tokenizer", default="runs/speedtest/tokenizer")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--rows", type=int, default=None, help="training rows (default all)")
    parser.add_argument("--build-rows", type=int, default=400,
                        help="training rows for the build-throughput comparison (stage 1)")
    parser.add_argument("--metric-rows", type=int, default=0,
                        help="rows of --metric-split decoded (to the end, --metric-beams) with each index variant "
                             "and with exact search to compare the task metric (stage 4; needs --model)")
    parser.add_argument("--metric-split", default="test", choices=("dev", "test"))
    parser.add_argument("--metric-beams", type=int, default=5)
    parser.add_argument("--knn-params-from", type=Path, default=None,
                        help="a tuned datastore folder whose k, lambda, T the metric stage uses")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--factories", default="IVF256,Flat|nprobe=8;IVF256,Flat|nprobe=16;IVF512,Flat|nprobe=16;"
                        "IVF512,Flat|nprobe=32;IVF1024,Flat|nprobe=16;HNSW32|efSearch=64;HNSW32|efSearch=128;"
                        "IVF512,SQfp16|nprobe=16;IVF512,PQ32|nprobe=16;OPQ32,IVF512,PQ32|nprobe=16",
                        help="';'-separated factory strings, each optionally '|nprobe=N' or '|efSearch=N'")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--step-queries", type=int, default=160, help="queries per decoding step (batch x beams)")
    parser.add_argument("--queries", type=int, default=3200)
    parser.add_argument("--decode-rows", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=48)
    parser.add_argument("--decode-indexes", default="HNSW32|efSearch=32;HNSW32|efSearch=64;IVF1024,Flat|nprobe=8",
                        help="';'-separated index variants to decode with")
    parser.add_argument("--faiss-threads", default="1,2", help="comma list of faiss OpenMP thread counts")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of the decode timing")
    parser.add_argument("--no-exact-decode", action="store_true",
                        help="skip exact search in the decode stage (it is slow on a CPU)")
    parser.add_argument("--skip", default="", help="comma list of stages to skip: build,index,decode")
    parser.add_argument("--work", default=None,
                        help="keep the built stores in this folder and reuse them on the next run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from datastore import build_datastore
    from t2m.data import load_chebi20_records

    threads = torch.get_num_threads()
    import faiss

    print(f"torch threads {threads}, faiss threads {faiss.omp_get_max_threads()}", flush=True)
    model, tokenizer, prompt_style, what = _setup(args)
    splits = load_chebi20_records(args.data)
    train = splits.train[: args.rows] if args.rows else splits.train
    batches, _, _ = _batches(tokenizer, train, args.task, prompt_style, args.batch_size, args.max_len)
    result = {"model": what, "task": args.task, "train_rows": len(train), "d_model": model.config.d_model,
              "command": " ".join(sys.argv), "load_average_at_start": list(os.getloadavg())}
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_datastore_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "build" not in skip:
            small, _, _ = _batches(tokenizer, train[: args.build_rows], args.task, prompt_style, args.batch_size,
                                   args.max_len)
            shutil.rmtree(work / "build_small", ignore_errors=True)
            (work / "build_small").mkdir()
            result["build"] = {"rows": min(args.build_rows, len(train)),
                               **bench_build(model, tokenizer, small, work / "build_small")}
            shutil.rmtree(work / "build_small", ignore_errors=True)
            print(json.dumps(result["build"]), flush=True)
        if not (work / "train" / "datastore.json").is_file():
            build_datastore(model, batches, work / "train", tokenizer=tokenizer, index_factory="none",
                            progress=True)
        result["full_build"] = {k: json.loads((work / "train" / "datastore.json").read_text())["build"].get(k)
                                for k in ("compute_seconds", "tokens_per_second")}
        keys = np.load(work / "train" / "keys.npy", mmap_mode="r")
        result["entries"] = int(keys.shape[0])
        dev_batches, dev_sources, _ = _batches(tokenizer, splits.dev, args.task, prompt_style, args.batch_size,
                                               args.max_len)
        if not (work / "dev" / "datastore.json").is_file():
            build_datastore(model, dev_batches, work / "dev", tokenizer=tokenizer, index_factory="none",
                            progress=False)
        dev_keys = np.load(work / "dev" / "keys.npy", mmap_mode="r")
        picks = np.random.default_rng(0).choice(len(dev_keys), min(args.queries, len(dev_keys)), replace=False)
        queries = np.ascontiguousarray(dev_keys[np.sort(picks)], dtype=np.float32)
        if "index" not in skip:
            result["index"] = bench_index(keys, queries, args.factories.split(";"), args.k, args.step_queries, work)
        if "decode" not in skip:
            result["decode"] = bench_decode(model, tokenizer, work / "train", dev_sources[: args.decode_rows],
                                            args.task, prompt_style, args.batch_size, 5, args.decode_tokens,
                                            args.k, args.decode_indexes.split(";"),
                                            [int(t) for t in args.faiss_threads.split(",")], args.repeats,
                                            not args.no_exact_decode, getattr(args, "generate_options", None))
        if args.metric_rows and args.model and "metric" not in skip:
            split = splits.test if args.metric_split == "test" else splits.dev
            result["metric"] = bench_metric(model, tokenizer, work / "train", split[: args.metric_rows],
                                            args.task, prompt_style, args.batch_size, args.k,
                                            args.decode_indexes.split(";"), args.metric_beams,
                                            args.knn_params_from, getattr(args, "generate_options", None))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
