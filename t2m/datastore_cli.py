"""``t2m datastore build`` and ``t2m datastore inspect``: the glue between t2m's checkpoints, tasks and
data and the task-agnostic datastore core.

    t2m datastore build --model DIR --data DIR --task {text2mol,mol2text} --out DIR
                        [--index FACTORY] [--layer LAYER] [--batch-size N] [--fraction F]
    t2m datastore inspect --store DIR --model DIR "input text"

Both are thin wrappers over :func:`build_task_datastore` and :func:`inspect_translation`.
Multi-process builds: ``torchrun --standalone --nproc_per_node N -m t2m datastore build ...`` (CPU or
GPUs), or ``accelerate launch --multi_gpu --num_processes N -m t2m datastore build ...`` on GPUs
(accelerate's ``--cpu`` runs one process). Every rank reads the same data and computes its share of
the batches (rank r takes chunks r, r + N, ...); rank 0 merges them in order and publishes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LEN = 512


# ------------------------------------------------------------------------------------------- data


def training_records(data: str | os.PathLike | None, setting: str = "auto", dev_size: int | None = None
                     ) -> tuple[list[dict], dict[str, Any]]:
    """The training pairs a datastore is built from and a JSON description of where they came from.

    ``data``: a ChEBI-20 folder (or a folder holding ``chebi20/``) -> its training split under
    ``setting`` (benchmark: validation.txt minus the dev slice); a ``.tsv`` / ``.jsonl`` file -> all of
    its rows; None -> ChEBI-20 where t2m finds it.
    """
    from datastore.store import file_sha256
    from t2m.data import CHEBI20_FILES, DEV_SIZE, load_chebi20_records, read_records

    path = Path(data) if data is not None else None
    if path is not None and path.is_file():
        records = read_records(path)
        return records, {"dataset": "pairs file", "split": "all",
                         "files": [{"path": str(path.resolve()), "sha256": file_sha256(path)}]}
    dev_size = DEV_SIZE if dev_size is None else dev_size
    splits = load_chebi20_records(path, setting, dev_size=dev_size)
    used = ["train"] if splits.setting == "official" else ["validation"]
    files = [{"path": str((splits.data_dir / CHEBI20_FILES[name]).resolve()),
              "sha256": file_sha256(splits.data_dir / CHEBI20_FILES[name])} for name in used]
    return splits.train, {"dataset": "chebi20", "setting": splits.setting, "split": "train",
                          "split_source": splits.sources.get("train", ""), "dev_size": dev_size,
                          "files": files}


def subset_rows(count: int, fraction: float, seed: int = 0) -> list[int]:
    """Indices of a deterministic random ``fraction`` of ``count`` rows (all rows, in order, for 1.0),
    sorted; nested: a smaller fraction's rows are a subset of a larger one's."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(range(count))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return sorted(order[: max(1, math.ceil(fraction * count))])


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


# ------------------------------------------------------------------------------------------- build


def build_task_datastore(model_dir: str | os.PathLike, task: str, out: str | os.PathLike,
                         data: str | os.PathLike | None = None, *, setting: str = "auto",
                         dev_size: int | None = None, index_factory: str | None = None, layer: str = "lm_head_input",
                         batch_size: int = DEFAULT_BATCH_SIZE, max_source_len: int = DEFAULT_MAX_LEN,
                         max_target_len: int = DEFAULT_MAX_LEN, fraction: float = 1.0,
                         nprobe: int | None = None, ef_search: int | None = None,
                         knn: Any = None, auto_temperature: bool | None = None, allow_pickle: bool = False,
                         overwrite: bool = False,
                         resume: bool = True, chunk_batches: int = 8, progress: bool = True) -> Path:
    """Build the ``task`` datastore of the checkpoint in ``model_dir`` over the training pairs of
    ``data`` (see :func:`training_records`) into ``out``; returns ``out``."""
    from datastore.build import PairBatches, build_datastore
    from t2m.batching import encode_batch
    from t2m.modeling import load_model
    from t2m.tasks import check_task, source_and_target

    check_task(task)
    model, tokenizer, info = load_model(model_dir, allow_pickle=allow_pickle, device=_device())
    records, data_meta = training_records(data, setting, dev_size)
    rows = subset_rows(len(records), fraction)
    pairs = [source_and_target(records[i]["smiles"], records[i]["description"], task) for i in rows]
    encode = partial(_encode_pairs, tokenizer, task=task, prompt_style=info.prompt_style,
                     max_source_len=max_source_len, max_target_len=max_target_len)
    batches = PairBatches(encode, [s for s, _ in pairs], [t for _, t in pairs], batch_size, row_ids=rows,
                          sort_by_length=True)
    data_meta.update({"rows": len(rows), "of_rows": len(records), "fraction": fraction,
                      "row_ids": "indices into the split's rows" if fraction < 1 else "all rows, in order",
                      "prompt_style": info.prompt_style, "max_source_len": max_source_len,
                      "max_target_len": max_target_len, "batch_size": batch_size})
    options = {k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search)) if v is not None}
    return build_datastore(model, batches, Path(out), tokenizer=tokenizer, task=task, layer=layer, data=data_meta,
                           knn=knn, auto_temperature=auto_temperature, index_factory=index_factory,
                           index_options=options,
                           chunk_batches=chunk_batches, resume=resume, overwrite=overwrite, progress=progress)


def subset_task_datastore(full: str | os.PathLike, out: str | os.PathLike, fraction: float, *,
                          index_factory: str | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """The ``fraction`` store of the training pairs (:func:`subset_rows`, the rows
    :func:`build_task_datastore` with that ``fraction`` would use) cut from the full store in ``full``
    (:func:`datastore.build.subset_datastore`: the same entries, no model run); returns ``out``."""
    from datastore.build import subset_datastore
    from datastore.store import Datastore, DatastoreError

    store = Datastore.load(full)
    data = dict(store.meta.get("data", {}))
    if float(data.get("fraction", 1.0)) != 1.0:
        raise DatastoreError(f"{store.path}/datastore.json: built from {data.get('fraction')} of the training pairs; "
                             "cut subsets from a store of all of them")
    of_rows = int(data.get("of_rows") or data.get("rows") or int(store.rows.max()) + 1)
    rows = subset_rows(of_rows, fraction)
    data.update({"rows": len(rows), "of_rows": of_rows, "fraction": fraction,
                 "row_ids": "indices into the split's rows"})
    return subset_datastore(full, out, rows, data=data, index_factory=index_factory, overwrite=overwrite,
                            progress=progress)


def _encode_pairs(tokenizer, sources, targets, *, task, prompt_style, max_source_len, max_target_len):
    from t2m.batching import encode_batch

    return encode_batch(tokenizer, sources, targets, task, prompt_style, max_source_len, max_target_len)


# ----------------------------------------------------------------------------------------- inspect


@dataclass
class NeighbourInfo:
    """One retrieved entry: the training row and target position it came from, its token, distance."""

    entry: int
    row: int
    position: int
    token: str
    distance: float
    cid: str | None = None


@dataclass
class TokenInspection:
    """One generated token: its probability under the model alone and after retrieval, and the
    neighbours retrieved for the state that produced it."""

    step: int
    token: str
    token_id: int
    p_model: float
    p_mixed: float
    neighbours: list[NeighbourInfo] = field(default_factory=list)

    @property
    def moved(self) -> float:
        """How much retrieval moved this token's probability (p_mixed - p_model)."""
        return self.p_mixed - self.p_model


def inspect_translation(store: Any, model: Any, tokenizer: Any, text: str, task: str | None = None, *,
                        prompt_style: str = "textchem", k: int | None = None, lambda_: float | None = None,
                        temperature: float | None = None, neighbours: int = 3, max_new_tokens: int = 256,
                        records: Sequence[dict] | None = None, exact: bool = False
                        ) -> tuple[str, list[TokenInspection]]:
    """Greedy-decode ``text`` with retrieval and return (output text, one :class:`TokenInspection` per
    generated token). ``records``: the store's training rows, to name each neighbour's CID."""
    import torch

    from datastore.augment import knn_generation
    from t2m.batching import encode_batch

    task = task or store.task
    batch = encode_batch(tokenizer, [text], None, task, prompt_style)
    device = next(model.parameters()).device
    trace: list = []
    with torch.inference_mode(), knn_generation(model, store, k=k, lambda_=lambda_, temperature=temperature,
                                                exact=exact, trace=trace) as processors:
        out = model.generate(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device), num_beams=1, do_sample=False,
                             max_new_tokens=max_new_tokens, logits_processor=processors)
    generated = out[0, 1:].tolist()  # drop the decoder start token
    report = []
    for step, (token_id, traced) in enumerate(zip(generated, trace)):
        found = []
        for j in range(min(neighbours, traced.neighbours.indices.shape[1])):
            entry = int(traced.neighbours.indices[0, j])
            if entry < 0:
                continue
            row = int(store.rows[entry])
            found.append(NeighbourInfo(
                entry=entry, row=row, position=int(store.positions[entry]),
                token=tokenizer.convert_ids_to_tokens(int(store.values[entry])),
                distance=float(traced.neighbours.distances[0, j]),
                cid=str(records[row].get("cid")) if records is not None and row < len(records) else None))
        report.append(TokenInspection(
            step=step, token=tokenizer.convert_ids_to_tokens(token_id), token_id=token_id,
            p_model=float(traced.model_log_probs[0, token_id].exp()),
            p_mixed=float(traced.mixed_log_probs[0, token_id].exp()), neighbours=found))
        if token_id == tokenizer.eos_token_id:
            break
    return tokenizer.decode(generated, skip_special_tokens=True), report


def format_inspection(output: str, report: Sequence[TokenInspection]) -> str:
    """A plain-text table of :func:`inspect_translation`'s result."""
    lines = [f"output: {output}", "",
             f"{'step':>4}  {'token':<16} {'p_model':>8} {'p_knn_mix':>9} {'moved':>7}   neighbours "
             "(row[cid]@position token d)"]
    for item in report:
        near = "; ".join(
            f"{n.row}{'[' + n.cid + ']' if n.cid else ''}@{n.position} {n.token!r} {n.distance:.3g}"
            for n in item.neighbours)
        lines.append(f"{item.step:>4}  {item.token!r:<16} {item.p_model:>8.4f} {item.p_mixed:>9.4f} "
                     f"{item.moved:>+7.4f}   {near}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="datastore_command", metavar="{build,inspect}", required=True)

    build = sub.add_parser("build", help="build a task's datastore from a checkpoint and training pairs")
    build.add_argument("--model", required=True, help="checkpoint directory (config.json + weights + tokenizer)")
    build.add_argument("--data", default=None,
                       help="ChEBI-20 folder (or one holding chebi20/), or a TSV/JSONL pairs file "
                            "(default: ChEBI-20 where t2m finds it)")
    build.add_argument("--setting", default="auto", choices=("auto", "official", "benchmark"),
                       help="ChEBI-20 split setting (benchmark: validation.txt minus the dev slice)")
    build.add_argument("--task", required=True, choices=("text2mol", "mol2text"))
    build.add_argument("--out", required=True, help="store folder to create")
    build.add_argument("--index", default=None, help="faiss index_factory string, 'Flat' for exact, "
                                                     "'none' for no index (default: %(default)s -> DEFAULT_FACTORY)")
    build.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (saved as the default)")
    build.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (saved as the default)")
    build.add_argument("--layer", default="lm_head_input",
                       help="key: lm_head_input (default), final_norm, or block:<i>")
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    build.add_argument("--max-source-len", type=int, default=DEFAULT_MAX_LEN)
    build.add_argument("--max-target-len", type=int, default=DEFAULT_MAX_LEN)
    build.add_argument("--fraction", type=float, default=1.0, help="use this random fraction of the pairs")
    build.add_argument("--k", type=int, default=None, help="default k saved in the store")
    build.add_argument("--lambda", dest="lambda_", type=float, default=None, help="default lambda saved")
    build.add_argument("--temperature", type=float, default=None,
                       help="default temperature saved (default: the median squared distance between "
                            "neighbouring keys)")
    build.add_argument("--chunk-batches", type=int, default=8, help="batches per resumable chunk")
    build.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    build.add_argument("--no-resume", action="store_true", help="discard an unfinished build instead of resuming")
    build.add_argument("--allow-pickle", action="store_true", help="allow loading pickled (.bin) weights")

    inspect = sub.add_parser("inspect", help="show each generated token with its retrieved neighbours")
    inspect.add_argument("--store", required=True)
    inspect.add_argument("--model", required=True)
    inspect.add_argument("input", help="the source text (a description for text2mol, a SMILES for mol2text)")
    inspect.add_argument("--task", default=None, choices=("text2mol", "mol2text"),
                         help="default: the store's task")
    inspect.add_argument("--data", default=None, help="the store's data, to name neighbours' CIDs")
    inspect.add_argument("--k", type=int, default=None)
    inspect.add_argument("--lambda", dest="lambda_", type=float, default=None)
    inspect.add_argument("--temperature", type=float, default=None)
    inspect.add_argument("--neighbours", type=int, default=3, help="neighbours shown per token")
    inspect.add_argument("--max-new-tokens", type=int, default=256)
    inspect.add_argument("--exact", action="store_true", help="search the keys exactly instead of the index")
    inspect.add_argument("--json", default=None, help="also write the report as JSON here")
    inspect.add_argument("--allow-pickle", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.datastore_command == "build":
        return _run_build(args)
    return _run_inspect(args)


def _run_build(args: argparse.Namespace) -> int:
    from datastore.store import Datastore, KNNParams

    knn = KNNParams().replace(k=args.k, lambda_=args.lambda_, temperature=args.temperature)
    out = build_task_datastore(args.model, args.task, args.out, args.data, setting=args.setting,
                               index_factory=args.index, layer=args.layer, batch_size=args.batch_size,
                               max_source_len=args.max_source_len, max_target_len=args.max_target_len,
                               fraction=args.fraction, nprobe=args.nprobe, ef_search=args.ef_search, knn=knn,
                               auto_temperature=args.temperature is None,
                               allow_pickle=args.allow_pickle, overwrite=args.overwrite,
                               resume=not args.no_resume, chunk_batches=args.chunk_batches)
    if int(os.environ.get("RANK", "0")) == 0:
        store = Datastore.load(out)
        index = store.meta["index"]
        print(f"{out}: {store.count:,} entries of dim {store.dim} ({store.layer}); index {index.get('factory')} "
              f"{index.get('bytes_per_entry', '-')} bytes/entry, built in {index.get('build_seconds', '-')} s; "
              f"{store.meta['build']['tokens_per_second'] or '-'} tokens/s")
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from datastore.store import Datastore
    from t2m.modeling import load_model

    model, tokenizer, info = load_model(args.model, allow_pickle=args.allow_pickle, device=_device())
    store = Datastore.load(args.store, model=model, tokenizer=tokenizer)
    records = None
    if args.data or store.meta.get("data", {}).get("dataset") == "chebi20":
        try:
            data_meta = store.meta.get("data", {})
            records, _ = training_records(args.data, data_meta.get("setting", "auto"), data_meta.get("dev_size"))
        except (FileNotFoundError, ValueError) as error:
            print(f"(neighbour CIDs not shown: {error})")
    output, report = inspect_translation(store, model, tokenizer, args.input, args.task,
                                         prompt_style=info.prompt_style, k=args.k, lambda_=args.lambda_,
                                         temperature=args.temperature, neighbours=args.neighbours,
                                         max_new_tokens=args.max_new_tokens, records=records, exact=args.exact)
    params = store.knn_params.replace(k=args.k, lambda_=args.lambda_, temperature=args.temperature)
    print(f"store {store.path} ({store.count:,} entries, task {store.task}); k={params.k} "
          f"lambda={params.lambda_} T={params.temperature}")
    print(format_inspection(output, report))
    if args.json:
        Path(args.json).write_text(json.dumps({"output": output, "tokens": [asdict(r) for r in report]},
                                              indent=2) + "\n")
    return 0
