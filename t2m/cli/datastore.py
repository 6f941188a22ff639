"""``t2m datastore build`` and ``t2m datastore inspect``: thin wrappers over
:func:`t2m.knn.store.build_task_datastore` and :func:`t2m.knn.inspect.inspect_translation`.

    t2m datastore build --model DIR --data DIR --task {text2mol,mol2text} --out DIR
                        [--index FACTORY] [--nprobe N] [--train-size N] [--gpu auto|yes|no]
                        [--layer LAYER] [--batch-size N] [--fraction F] [--precision auto|bf16|fp32]
    t2m datastore inspect --store DIR --model DIR "input text"

Multi-process builds: see :mod:`t2m.knn.store`. Each action's options are checked before the model loads
(:func:`check_build`, :func:`check_inspect`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from datastore.params import KNNParams, PartialKNNParams
from datastore.store import Datastore
from t2m.cli.checks import UsageError, check_existing, usage_errors
from t2m.data import SETTINGS, training_records
from t2m.decoding.batching import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LEN
from t2m.decoding.translator import Translator
from t2m.errors import check_range
from t2m.io import check_writable_file, check_writable_folder
from t2m.knn.inspect import format_inspection, inspect_translation
from t2m.knn.store import build_task_datastore, device
from t2m.model.checkpoint import CHECKPOINT_FIX, checkpoint_dir, load_model
from t2m.model.precision import PRECISIONS
from t2m.options import open_store

# the fields the core names otherwise than the parser (t2m.cli.checks.flag_names)
FIELD_FLAGS = {"lambda_": "--knn-lambda", "out_dir": "--out", "use_gpu=False": "--gpu no", "use_gpu=True": "--gpu yes"}


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="datastore_command", metavar="{build,inspect}", required=True)

    build = sub.add_parser("build", help="build a task's datastore from a checkpoint and training pairs",
                           description="Build a kNN-MT datastore: run the checkpoint over a task's training pairs "
                                       "with teacher forcing, keep each target token's decoder state as a key, index "
                                       "the keys with FAISS. Resumable: rerunning an interrupted build continues "
                                       "where it stopped (--no-resume starts over).")
    build.add_argument("--model", required=True, help="checkpoint directory (config.json + weights + tokenizer)")
    build.add_argument("--data", default=None,
                       help="ChEBI-20 folder (or one holding chebi20/), or a TSV/JSONL pairs file "
                            "(default: ChEBI-20 where t2m finds it)")
    build.add_argument("--setting", default="auto", choices=SETTINGS,
                       help="ChEBI-20 split setting (benchmark: validation.txt minus the dev slice)")
    build.add_argument("--task", required=True, choices=("text2mol", "mol2text"),
                       help="which direction the store serves: text2mol (keys of SMILES tokens) or mol2text (keys "
                            "of caption tokens)")
    build.add_argument("--out", required=True, help="store folder to create")
    build.add_argument("--index", default=None,
                       help="FAISS index: 'auto' (default: IVF with about 4*sqrt(N) lists and float16 codes, an HNSW "
                            "coarse quantizer from 65,536 lists; IVF2048,SQfp16 at 260k), 'auto,PQ' (8x smaller codes, "
                            "re-ranked exactly from the keys), any index_factory string ('Flat': exact search), or "
                            "'none' (no index)")
    build.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (saved as the default; default 10, "
                       "from 4,096 lists 10*(lists/2048)^(1/3): 13 at 4,096, 16 at 8,192, 20 at 16,384)")
    build.add_argument("--ef-search", type=int, default=None,
                       help="HNSW efSearch, of the index or its coarse quantizer (saved as the default; default 64)")
    build.add_argument("--train-size", type=int, default=None,
                       help="keys the index is trained on (default: 64 per IVF list, at least 100,000)")
    build.add_argument("--gpu", choices=("auto", "yes", "no"), default="auto",
                       help="build the index on the GPUs: auto (when faiss has GPU support and sees one), yes (fail "
                            "without), no")
    build.add_argument("--layer", default="lm_head_input",
                       help="key: lm_head_input (default), final_norm, or block:<i>")
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="training pairs per forward pass")
    build.add_argument("--max-source-len", type=int, default=DEFAULT_MAX_LEN, help="source tokens kept per pair")
    build.add_argument("--max-target-len", type=int, default=DEFAULT_MAX_LEN,
                       help="target tokens kept per pair (one store entry each)")
    build.add_argument("--fraction", type=float, default=1.0, help="use this random fraction of the pairs")
    build.add_argument("--k", type=int, default=None,
                       help="neighbours per step saved as the store's default (t2m tune chooses it; default: 16)")
    build.add_argument("--knn-lambda", type=float, default=None,
                       help="weight of the kNN distribution saved as the store's default, in [0, 1] "
                            "(t2m tune chooses it; default: 0.3)")
    build.add_argument("--temperature", type=float, default=None,
                       help="default temperature saved (default: the median squared distance between "
                            "neighbouring keys)")
    build.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="arithmetic of the forward pass that computes the keys: auto (default: bf16 autocast where "
                            "the hardware has native bf16 -- a CUDA GPU that supports it, or a CPU with AVX512-BF16 or "
                            "AMX -- else fp32), bf16, fp32; keys are stored as float16 either way")
    build.add_argument("--chunk-batches", type=int, default=8, help="batches per resumable chunk")
    build.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    build.add_argument("--no-resume", dest="resume", action="store_false",
                       help="discard an unfinished build instead of resuming")
    build.add_argument("--allow-pickle", action="store_true", help="allow loading pickled (.bin) weights")

    inspect = sub.add_parser("inspect", help="show each generated token with its retrieved neighbours",
                             description="Translate one input with retrieval and show, for each generated token, the "
                                         "neighbours retrieved from the store and how they moved the probabilities.")
    inspect.add_argument("--store", required=True, help="datastore folder (t2m datastore build --out)")
    inspect.add_argument("--model", required=True, help="checkpoint directory the store was built from")
    inspect.add_argument("input", help="the source text (a description for text2mol, a SMILES for mol2text)")
    inspect.add_argument("--task", default=None, choices=("text2mol", "mol2text"),
                         help="default: the store's task")
    inspect.add_argument("--data", default=None, help="the store's data, to name neighbours' CIDs")
    inspect.add_argument("--k", type=int, default=None, help="neighbours retrieved per step (default: the store's)")
    inspect.add_argument("--knn-lambda", type=float, default=None,
                         help="weight of the kNN distribution, in [0, 1] (default: the store's)")
    inspect.add_argument("--temperature", type=float, default=None,
                         help="softmax temperature over distances (default: the store's)")
    inspect.add_argument("--neighbours", type=int, default=3, help="neighbours shown per token")
    inspect.add_argument("--max-new-tokens", type=int, default=256, help="most tokens generated")
    inspect.add_argument("--exact", action="store_true", help="search the keys exactly instead of the index")
    inspect.add_argument("--json", default=None, help="also write the report as JSON here")
    inspect.add_argument("--allow-pickle", action="store_true",
                         help="allow loading pickled (.bin) weights; only for checkpoints you trust")


def run(args: argparse.Namespace) -> int:
    if args.datastore_command == "build":
        return _run_build(args)
    return _run_inspect(args)


def check_build(args: argparse.Namespace) -> KNNParams:
    """Refuse, before any model loads, a build that cannot go on (UsageError, exit 2); the kNN parameters
    saved as the store's defaults."""
    with usage_errors(args):
        for name in ("batch_size", "max_source_len", "max_target_len", "chunk_batches", "nprobe", "ef_search",
                     "train_size"):
            check_range(name, getattr(args, name), 1, rule="must be 1 or more")
        check_range("fraction", args.fraction, 0, 1, low_open=True, rule="must be in (0, 1] (1: every training pair)")
        knn = PartialKNNParams(k=args.k, lambda_=args.knn_lambda, temperature=args.temperature).over(KNNParams())
        checkpoint_dir(args.model, args.allow_pickle, fix=f"{CHECKPOINT_FIX}, or t2m/default_model")
    check_existing("--data", args.data)
    if (Path(args.out) / "datastore.json").is_file() and not args.overwrite:
        raise UsageError(f"{args.out} already holds a datastore ({Path(args.out) / 'datastore.json'}); pass --overwrite "
                         "to replace it, or choose another --out")
    with usage_errors(args):
        check_writable_folder(args.out, "out")
    return knn


def check_inspect(args: argparse.Namespace) -> None:
    """Refuse, before the model loads, an inspection that cannot run (UsageError, exit 2): its input, kNN
    settings, checkpoint, store and --json."""
    if not args.input.strip():
        raise UsageError("INPUT is empty; give the text to translate (a description for text2mol, a SMILES for "
                         "mol2text)")
    with usage_errors(args):
        PartialKNNParams(k=args.k, lambda_=args.knn_lambda, temperature=args.temperature)
        check_range("neighbours", args.neighbours, 0, rule="must be 0 or more")
        check_range("max_new_tokens", args.max_new_tokens, 1, rule="must be 1 or more")
        checkpoint_dir(args.model, args.allow_pickle, fix=CHECKPOINT_FIX)
        open_store(args.store, task=args.task)
    check_existing("--data", args.data)
    with usage_errors(args):
        check_writable_file(args.json, "json")


def _run_build(args: argparse.Namespace) -> int:
    knn = check_build(args)
    try:
        out = _build(args, knn)
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"t2m datastore build: interrupted: {interrupted_build(Path(args.out))}", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        store = Datastore.load(out)
        index = store.meta["index"]
        print(f"{out}: {store.count:,} entries of dim {store.dim} ({store.layer}); index {index.get('factory')} "
              f"{index.get('bytes_per_entry', '-')} bytes/entry, built in {index.get('build_seconds', '-')} s; "
              f"{store.meta['build']['tokens_per_second'] or '-'} tokens/s "
              f"({store.meta['build'].get('compute_dtype') or '-'})")
    return 0


def interrupted_build(out: Path) -> str:
    """What an interrupted build of ``out`` kept (its finished chunks, in its work folder) and how to go on."""
    from datastore.build import PROGRESS_FILE, work_dir_for

    work = work_dir_for(out)
    try:
        signature = json.loads((work / PROGRESS_FILE).read_text(encoding="utf-8"))["signature"]
        batches, per_chunk = int(signature["num_batches"]), int(signature["chunk_batches"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no batch was finished, nothing kept"
    done = min(batches, len(list((work / "chunks").glob("c*.json"))) * per_chunk)
    return (f"{done} of {batches} batches kept in {work}; rerun the same command to resume (--no-resume starts "
            "over)")


def _build(args: argparse.Namespace, knn: KNNParams) -> Path:
    """:func:`t2m.knn.store.build_task_datastore` with the options of ``args``."""
    return build_task_datastore(args.model, args.task, args.out, args.data, setting=args.setting,
                                index_factory=args.index, layer=args.layer, batch_size=args.batch_size,
                                max_source_len=args.max_source_len, max_target_len=args.max_target_len,
                                fraction=args.fraction, nprobe=args.nprobe, ef_search=args.ef_search,
                                train_size=args.train_size, use_gpu={"yes": True, "no": False}.get(args.gpu, "auto"),
                                knn=knn,
                                auto_temperature=args.temperature is None,
                                allow_pickle=args.allow_pickle, overwrite=args.overwrite,
                                resume=args.resume, chunk_batches=args.chunk_batches, precision=args.precision)


def _run_inspect(args: argparse.Namespace) -> int:
    check_inspect(args)
    model, tokenizer, info = load_model(args.model, allow_pickle=args.allow_pickle, device=device())
    store = Datastore.load(args.store, model=model, tokenizer=tokenizer)
    records = None
    if args.data or store.meta.get("data", {}).get("dataset") == "chebi20":
        try:
            data_meta = store.meta.get("data", {})
            records, _ = training_records(args.data, data_meta.get("setting", "auto"), data_meta.get("dev_size"))
        except (FileNotFoundError, ValueError) as error:
            print(f"(neighbour CIDs not shown: {error})")

    text = Translator(model, tokenizer, info).model_inputs([args.input], args.task or store.task)[0]
    output, report = inspect_translation(store, model, tokenizer, text, args.task,
                                         prompt_style=info.prompt_style, k=args.k, lambda_=args.knn_lambda,
                                         temperature=args.temperature, neighbours=args.neighbours,
                                         max_new_tokens=args.max_new_tokens, records=records, exact=args.exact)
    params = store.knn_params.replace(k=args.k, lambda_=args.knn_lambda, temperature=args.temperature)
    print(f"store {store.path} ({store.count:,} entries, task {store.task}); k={params.k} "
          f"lambda={params.lambda_} T={params.temperature}")
    print(format_inspection(output, report))
    if args.json:
        Path(args.json).write_text(json.dumps({"output": output, "tokens": [asdict(r) for r in report]},
                                              indent=2) + "\n")
    return 0
