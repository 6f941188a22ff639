"""A t2m task's kNN-MT datastore: which training pairs it holds, and building it from a checkpoint.

The glue between t2m's checkpoints, tasks and data and the task-agnostic :mod:`datastore` library:
:func:`build_task_datastore` turns (SMILES, description) records into the task's (source, target) pairs,
encodes them with the task prompt and hands them to :func:`datastore.build.build_datastore`.
Multi-process builds: ``torchrun --standalone --nproc_per_node N -m t2m datastore build ...`` (CPU or
GPUs), or ``accelerate launch --multi_gpu --num_processes N -m t2m datastore build ...`` on GPUs
(accelerate's ``--cpu`` runs one process). Every rank reads the same data and computes its share of
the batches (rank r takes chunks r, r + N, ...); rank 0 merges them in order and publishes.
"""

from __future__ import annotations

import math
import os
import random
from functools import partial
from pathlib import Path
from typing import Any

from datastore.store import Datastore, DatastoreError
from datastore.write import subset_datastore
from t2m.data import training_records
from t2m.decoding.batching import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LEN,
    LENGTH_MULTIPLE,
    encode_batch,
    encode_sources,
)
from t2m.model.checkpoint import load_model
from t2m.model.kernels import install
from t2m.model.precision import compute_dtype
from t2m.neighbours.database import NeighbourFormat, load_checkpoint_database, model_inputs
from t2m.tasks import add_prompt, check_task, source_and_target


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


def device() -> str:
    """The device this process computes on: its ``LOCAL_RANK``'s GPU under torchrun/accelerate, else the
    first GPU, else the CPU."""
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
                         nprobe: int | None = None, ef_search: int | None = None, train_size: int | None = None,
                         use_gpu: bool | str = "auto", knn: Any = None, auto_temperature: bool | None = None,
                         allow_pickle: bool = False,
                         overwrite: bool = False,
                         resume: bool = True, chunk_batches: int = 8, progress: bool = True,
                         neighbour_database: Any = None, precision: str = "auto") -> Path:
    """Build the ``task`` datastore of the checkpoint in ``model_dir`` over the training pairs of
    ``data`` (see :func:`t2m.data.training_records`) into ``out``; returns ``out``. A checkpoint trained with
    neighbours reads each pair with its nearest other-molecule pairs of its database (``neighbour_database``,
    default: the checkpoint's own), as in training. ``index_factory`` (default ``"auto"``: sized by the entry
    count), ``nprobe``, ``ef_search``, ``train_size``, ``use_gpu``: :func:`datastore.index.build_index`.
    ``precision``: the forward pass's arithmetic (:func:`t2m.model.precision.compute_dtype`; "auto": bf16
    autocast where the hardware has native bf16, else float32)."""
    from datastore.build import build_datastore

    check_task(task)
    dtype = compute_dtype(precision)
    model, tokenizer, info = load_model(model_dir, allow_pickle=allow_pickle, device=device())
    install(model, evaluation=True)  # attention without a materialised position-bias mask: a faster pass
    records, data_meta = training_records(data, setting, dev_size)
    rows = subset_rows(len(records), fraction)
    batches, neighbours_meta = task_batches(tokenizer, info, task, records, rows, batch_size=batch_size,
                                            max_source_len=max_source_len, max_target_len=max_target_len,
                                            neighbour_database=neighbour_database)
    if neighbours_meta:
        data_meta["neighbours"] = neighbours_meta
    data_meta.update({"rows": len(rows), "of_rows": len(records), "fraction": fraction,
                      "row_ids": "indices into the split's rows" if fraction < 1 else "all rows, in order",
                      "prompt_style": info.prompt_style, "max_source_len": max_source_len,
                      "max_target_len": max_target_len, "batch_size": batch_size})
    options = {k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search), ("train_size", train_size))
               if v is not None}
    options["use_gpu"] = use_gpu
    return build_datastore(model, batches, Path(out), tokenizer=tokenizer, task=task, layer=layer, data=data_meta,
                           knn=knn, auto_temperature=auto_temperature, index_factory=index_factory,
                           index_options=options,
                           chunk_batches=chunk_batches, compute_dtype=dtype, resume=resume, overwrite=overwrite,
                           progress=progress)


def task_batches(tokenizer: Any, info: Any, task: str, records: list[dict], rows: list[int], *,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_source_len: int = DEFAULT_MAX_LEN,
                 max_target_len: int = DEFAULT_MAX_LEN, neighbour_database: Any = None) -> tuple[Any, dict]:
    """The teacher-forcing batches a ``task`` store of the checkpoint ``info`` is built from: the ``rows`` of
    ``records`` as the task's (source, target) pairs, each source read with its nearest other-molecule
    pairs of ``neighbour_database`` (default: the checkpoint's own) when the checkpoint was trained with
    neighbours, encoded with the task prompt, sorted by length (:class:`datastore.build.PairBatches`).
    Returns the batches and a description of the neighbours ({} without)."""
    from datastore.build import PairBatches

    pairs = [source_and_target(records[i]["smiles"], records[i]["description"], task) for i in rows]
    neighbour_format = NeighbourFormat.from_meta(info.extra)
    meta: dict[str, Any] = {}
    if neighbour_format is not None:  # keys from the inputs the model reads: with leave-one-out neighbours
        database = load_checkpoint_database(info.path, neighbour_format, neighbour_database)
        sources = model_inputs([s for s, _ in pairs], task, info.prompt_style, neighbour_format, database,
                               exclude_same_molecule_as=[records[i]["smiles"] for i in rows])
        pairs = [(source, target) for source, (_, target) in zip(sources, pairs)]
        meta = {**neighbour_format.to_meta(), "database_rows": len(database),
                "exclude": "the pair itself and every pair of the same molecule"}
    encode = partial(encode_pairs, tokenizer, task=task, prompt_style=info.prompt_style,
                     max_source_len=max_source_len, max_target_len=max_target_len)
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    # token lengths as the batches will have them (prompt added, truncated), to sort by
    lengths = ([len(ids) for ids in encode_sources(tokenizer, [add_prompt(s, task, info.prompt_style) for s in sources],
                                                   max_source_len)],
               [len(ids) for ids in encode_sources(tokenizer, targets, max_target_len)])
    batches = PairBatches(encode, sources, targets, batch_size, row_ids=rows, sort_by_length=True, lengths=lengths,
                          length_multiple=LENGTH_MULTIPLE)
    return batches, meta


def subset_task_datastore(full: str | os.PathLike, out: str | os.PathLike, fraction: float, *,
                          index_factory: str | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """The ``fraction`` store of the training pairs (:func:`subset_rows`, the rows
    :func:`build_task_datastore` with that ``fraction`` would use) cut from the full store in ``full``
    (:func:`datastore.write.subset_datastore`: the same entries, no model run); returns ``out``."""
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


def encode_pairs(tokenizer, sources, targets, *, task, prompt_style, max_source_len, max_target_len):
    """:func:`t2m.decoding.batching.encode_batch` with keyword settings, as :class:`datastore.build.PairBatches` calls it."""
    return encode_batch(tokenizer, sources, targets, task, prompt_style, max_source_len, max_target_len)
