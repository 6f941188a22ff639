"""Build a datastore: a teacher-forced pass over (source, target) batches of any encoder-decoder model.

key = the decoder representation named by ``layer`` (see :mod:`datastore.hooks`) at target position t,
value = target token t. Positions whose label is -100 (or the pad id) never enter.

How the work is laid out, so a build streams, resumes and runs on several processes:

- the batches are cut into *chunks* of ``chunk_batches`` consecutive batches; chunk c is computed by rank
  ``c % world_size`` (one rank without torch.distributed) and saved as its own small ``.npy`` files plus a
  manifest JSON written last (the chunk's "done" mark) in ``OUT.tmp-build/chunks/``;
- only one chunk's keys are ever in memory; a rerun of the same build skips every chunk with a manifest
  (``progress.json`` records what the build is, and a rerun with another model/data/batching is refused);
- rank 0 then concatenates the chunks in order into memory-mapped ``keys.npy`` etc., builds the FAISS
  index, writes ``datastore.json`` last and publishes the folder with ``os.replace(OUT.tmp-build, OUT)``.
  A crash at any point leaves no folder at ``OUT`` that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from datastore.hooks import DEFAULT_LAYER, KeysCaptured, StateCapture, describe_layer
from datastore.store import (
    ARRAY_DTYPES,
    ARRAY_FILES,
    META_FILE,
    DatastoreError,
    KNNParams,
    model_fingerprint,
    read_json,
    save_npy_atomic,
    tokenizer_fingerprint,
    write_json_atomic,
)
from datastore.write import finish_store, work_dir_for

Batch = Mapping[str, torch.Tensor]
EncodeFn = Callable[[list[str], list[str]], Mapping[str, torch.Tensor]]
PROGRESS_FILE = "progress.json"


# ------------------------------------------------------------------------------------------ batches


class PairBatches(Sequence):
    """Lazily encoded batches of (source, target) text pairs: ``batches[i]`` encodes batch ``i`` only.

    ``encode(sources, targets)`` returns ``input_ids`` (B, S), ``attention_mask`` (B, S) and ``labels``
    (B, T) padded with -100 (``t2m.decoding.batching.encode_batch`` with its task arguments bound, or
    :func:`plain_encoder`). Each batch also carries ``rows`` (B,): the pair's index in the given lists
    (or in ``row_ids``), which the store keeps per entry. ``sort_by_length`` groups pairs of similar
    length (less padding, faster build); the order is deterministic. With ``lengths`` (each pair's source
    and target length in tokens, as truncated) pairs go by source length rounded up to ``length_multiple``
    (the padding's), then by target length: batches are padded to a multiple anyway, so within one source
    bucket the targets group for free. Without, by the texts' character lengths, source first. Sources
    first: the encoder reads every source token, and inputs read with neighbours are about 4x longer than
    their targets. On ChEBI-20's train split (text2mol, read with neighbours) the padded tokens were,
    sorted by character length 9.04M source / 5.25M target, by target tokens 8.31M / 2.13M, by source
    bucket then target 7.12M / 2.27M.
    """

    def __init__(self, encode: EncodeFn, sources: Sequence[str], targets: Sequence[str], batch_size: int,
                 row_ids: Sequence[int] | None = None, sort_by_length: bool = False,
                 lengths: tuple[Sequence[int], Sequence[int]] | None = None, length_multiple: int = 32) -> None:
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lengths is not None and not len(lengths[0]) == len(lengths[1]) == len(sources):
            raise ValueError(f"lengths must give a source and a target length for each of the {len(sources)} pairs")
        self.encode = encode
        self.sources = list(sources)
        self.targets = list(targets)
        self.row_ids = list(range(len(sources))) if row_ids is None else [int(r) for r in row_ids]
        order = list(range(len(sources)))
        if sort_by_length and lengths is not None:
            source_lengths, target_lengths = lengths
            order.sort(key=lambda i: (-(-int(source_lengths[i]) // length_multiple), -int(target_lengths[i]), i))
        elif sort_by_length:
            order.sort(key=lambda i: (-len(self.sources[i]), -len(self.targets[i]), i))
        self.order = order
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        picks = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        batch = dict(self.encode([self.sources[i] for i in picks], [self.targets[i] for i in picks]))
        batch["rows"] = torch.tensor([self.row_ids[i] for i in picks], dtype=torch.long)
        return batch


def plain_encoder(tokenizer: Any, max_source_len: int = 512, max_target_len: int = 512) -> EncodeFn:
    """An ``encode(sources, targets)`` for :class:`PairBatches` that uses the tokenizer as is (no task
    prompt): labels padded with -100."""

    def encode(sources: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
        enc = tokenizer(sources, padding=True, truncation=True, max_length=max_source_len, return_tensors="pt")
        tgt = tokenizer(targets, padding=True, truncation=True, max_length=max_target_len, return_tensors="pt")
        labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    return encode


# ------------------------------------------------------------------------------------- distributed


class _Dist:
    """Rank / world size / barrier from torch.distributed (initialised here from the torchrun /
    ``accelerate launch`` environment when needed and torn down by whoever initialised it)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.owned = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and not dist.is_initialized() and world > 1:
            # rank 0 alone merges and indexes while the others wait at a barrier: at millions of entries
            # that takes longer than torch's default 30 minutes (DATASTORE_DIST_TIMEOUT_S, default 24 h)
            from datetime import timedelta

            timeout = timedelta(seconds=float(os.environ.get("DATASTORE_DIST_TIMEOUT_S", 24 * 3600)))
            dist.init_process_group(backend="gloo", timeout=timeout)
            self.owned = True
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def barrier(self) -> None:
        if self.active:
            self.dist.barrier()

    def broadcast_error(self, message: str | None) -> str | None:
        """Rank 0's ``message`` on every rank (so all ranks fail together)."""
        if not self.active:
            return message
        box = [message]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owned and self.dist.is_initialized():
            self.dist.destroy_process_group()


# ----------------------------------------------------------------------------------- teacher forcing


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def batch_entries(model: Any, batch: Batch, capture: StateCapture, pad_token_id: int | None
                  ) -> dict[str, np.ndarray]:
    """Keys, values, rows, positions of one batch (rows = ``batch["rows"]`` or in-batch index).

    The forward pass stops at the hooked layer (the LM head is not computed).
    """
    device = next(model.parameters()).device
    labels = batch["labels"].to(device)  # (B, T), -100 = padding
    decoder_input_ids = model._shift_right(labels)  # (B, T): start token, labels[:, :-1], -100 -> pad
    capture.state = None
    try:
        model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
              decoder_input_ids=decoder_input_ids, use_cache=False)
    except KeysCaptured:
        pass
    states = capture.state  # (B, T, dim)
    if states is None:
        raise RuntimeError(f"the hook on {capture.module_name} did not fire: is it part of the decoder?")
    keep = labels != -100  # (B, T)
    if pad_token_id is not None:
        keep &= labels != pad_token_id
    batch_index, positions = keep.nonzero(as_tuple=True)  # row-major: by row, then position
    rows = batch.get("rows")
    rows = (rows.to(device) if rows is not None else torch.arange(labels.shape[0], device=device))[batch_index]
    return {
        "keys": states[keep].to(torch.float16).cpu().numpy(),  # (n, dim)
        "values": labels[keep].to(torch.int32).cpu().numpy(),  # (n,)
        "rows": rows.to(torch.int32).cpu().numpy(),
        "positions": positions.to(torch.int32).cpu().numpy(),
    }


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def _batch_digest(batch: Batch) -> str:
    digest = hashlib.sha256()
    for name in ("input_ids", "labels", "rows"):
        if name in batch:
            digest.update(batch[name].cpu().numpy().astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ build


def build_datastore(
    model: Any,
    batches: Sequence[Batch],
    out_dir: str | os.PathLike,
    *,
    tokenizer: Any,
    task: str = "",
    layer: str = DEFAULT_LAYER,
    data: Mapping[str, Any] | None = None,
    knn: KNNParams | None = None,
    auto_temperature: bool | None = None,
    index_factory: str | None = None,
    index_options: Mapping[str, Any] | None = None,
    chunk_batches: int = 8,
    compute_dtype: torch.dtype | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk_done: Callable[[int], None] | None = None,
) -> Path:
    """Build and publish a datastore in ``out_dir``; returns ``out_dir``.

    ``batches``: a sequence (``len`` and indexing; e.g. :class:`PairBatches`) of dicts with
    ``input_ids``, ``attention_mask``, ``labels`` (-100 padded) and optionally ``rows``.
    ``task`` and ``data`` (e.g. ``{"files": [{"path", "sha256"}], "rows": n}``) are recorded as given.
    ``knn``: the default k, λ, T saved in the store (None: :class:`KNNParams` defaults).
    ``auto_temperature`` (default: when ``knn`` is None) replaces T by the keys' scale: the median
    squared distance of 1,024 stored keys to their nearest other key.
    ``index_factory``: a FAISS ``index_factory`` string (default :data:`datastore.index.DEFAULT_FACTORY`),
    or ``"none"`` to skip the index. ``index_options``: keyword arguments of
    :func:`datastore.index.build_index` (``nprobe``, ``ef_search``, ``train_size``, ``use_gpu``).
    ``compute_dtype``: run the forward pass under ``torch.autocast`` in this dtype (``torch.bfloat16``: 1.4x
    float32's speed on a CPU with AVX512-BF16, measured on ChEBI-20 pairs); None: the model's own precision. The keys are
    stored as float16 either way; the dtype is recorded in ``datastore.json`` (``build.compute_dtype``).
    ``on_chunk_done(c)`` is called after chunk ``c`` is saved (tests use it to interrupt a build).

    Under torchrun / ``accelerate launch`` every rank must call this with the same arguments; each
    computes its chunks, rank 0 merges and publishes, and all ranks return after publication.
    Raises :class:`FileExistsError` when ``out_dir`` already holds a store and ``overwrite`` is False.
    """
    from datastore.index import DEFAULT_FACTORY

    out_dir = Path(out_dir)
    work = work_dir_for(out_dir)
    auto_temperature = knn is None if auto_temperature is None else auto_temperature
    knn = knn or KNNParams()
    index_factory = index_factory or DEFAULT_FACTORY
    if chunk_batches < 1:
        raise ValueError(f"chunk_batches must be >= 1, got {chunk_batches}")
    num_batches = len(batches)
    if num_batches == 0:
        raise ValueError("no batches to build a datastore from")
    num_chunks = (num_batches + chunk_batches - 1) // chunk_batches
    dist = _Dist()
    try:
        model_fp = model_fingerprint(model)
        tok_fp = tokenizer_fingerprint(tokenizer)
        signature = {
            "model": model_fp["fingerprint"], "tokenizer": tok_fp["fingerprint"], "layer": layer, "task": task,
            "data": json.loads(json.dumps(data or {}, default=str)), "num_batches": num_batches,
            "chunk_batches": chunk_batches, "compute_dtype": _dtype_name(compute_dtype),
            "batches": [_batch_digest(batches[0]), _batch_digest(batches[num_batches - 1])],
        }
        error = None
        if dist.rank == 0:
            error = _prepare_work_dir(out_dir, work, signature, resume, overwrite)
        error = dist.broadcast_error(error)
        if error:
            raise FileExistsError(error)
        dist.barrier()

        started = time.perf_counter()
        pad_token_id = getattr(model.config, "pad_token_id", None)
        my_chunks = [c for c in range(dist.rank, num_chunks, dist.world)]
        todo = [c for c in my_chunks if not (work / "chunks" / f"c{c:06d}.json").is_file()]
        if dist.rank == 0 and len(todo) < len(my_chunks):
            if todo:
                print(f"datastore build: resuming at batch {todo[0] * chunk_batches + 1} of {num_batches} "
                      f"(the batches before were kept in {work})", flush=True)
            else:
                print(f"datastore build: resuming: all {num_batches} batches were computed (kept in {work}); "
                      "merging and indexing", flush=True)
        my_batches = sum(min(chunk_batches, num_batches - c * chunk_batches) for c in todo)
        tokens_done = 0
        bar = tqdm(total=my_batches, unit="batch", desc=f"datastore build (rank {dist.rank}/{dist.world})",
                   disable=not progress or dist.rank != 0, dynamic_ncols=True)
        device_type = next(model.parameters()).device.type
        autocast = torch.autocast(device_type, dtype=compute_dtype, enabled=compute_dtype is not None)
        with _eval_mode(model), torch.inference_mode(), autocast, StateCapture(model, layer, stop=True) as capture:
            for chunk in todo:
                tokens_done += _build_chunk(model, batches, chunk, chunk_batches, num_batches, capture,
                                            pad_token_id, work / "chunks", bar, started, tokens_done)
                if on_chunk_done is not None:
                    on_chunk_done(chunk)
        bar.close()
        compute_seconds = time.perf_counter() - started
        dist.barrier()
        if dist.rank == 0:
            options = dict(index_options or {})
            if dist.world > 1:  # the other ranks' models still hold their GPUs: index on rank 0's only
                options.setdefault("gpus", 1)
            _merge_and_publish(model, model_fp, tok_fp, work, out_dir, num_chunks, layer, task, data, knn,
                               auto_temperature, index_factory, options, compute_seconds,
                               dist.world, overwrite, progress, _dtype_name(compute_dtype))
        dist.barrier()
        return out_dir
    finally:
        dist.close()


def _prepare_work_dir(out_dir: Path, work: Path, signature: dict, resume: bool, overwrite: bool) -> str | None:
    """Create or validate the work folder; an error message (shared with all ranks) or None."""
    if (out_dir / META_FILE).is_file() and not overwrite:
        return (f"{out_dir} already holds a datastore ({out_dir / META_FILE}); pass overwrite=True to replace it, "
                "or choose another out_dir")
    progress_path = work / PROGRESS_FILE
    if work.exists():
        old = None
        if resume and progress_path.is_file():
            try:
                old = read_json(progress_path).get("signature")
            except DatastoreError as error:
                return f"{error} -- it belongs to the unfinished build in {work}: rerun with resume=False to start over"
        if resume and old == signature:
            return None
        if resume and old is not None and old != signature:
            changed = sorted(k for k in signature if signature.get(k) != old.get(k))
            print(f"datastore build: {work} holds an unfinished build of something else "
                  f"(different {', '.join(changed)}); starting over")
        shutil.rmtree(work)
    (work / "chunks").mkdir(parents=True)
    write_json_atomic(progress_path, {"signature": signature,
                                      "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return None


def _build_chunk(model: Any, batches: Sequence[Batch], chunk: int, chunk_batches: int, num_batches: int,
                 capture: StateCapture, pad_token_id: int | None, chunk_dir: Path, bar: Any,
                 started: float, tokens_before: int) -> int:
    """Compute and save chunk ``chunk``; returns its number of entries."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*ARRAY_FILES, "batch")}
    batch_sizes, has_rows = [], []
    first = chunk * chunk_batches
    for index in range(first, min(first + chunk_batches, num_batches)):
        batch = batches[index]
        entries = batch_entries(model, batch, capture, pad_token_id)
        for name, array in entries.items():
            parts[name].append(array)
        # which batch of the chunk each entry came from: makes in-batch rows global at merge time
        parts["batch"].append(np.full(len(entries["values"]), index - first, dtype=np.int32))
        batch_sizes.append(int(batch["labels"].shape[0]))
        has_rows.append("rows" in batch)
        tokens_before += len(entries["values"])
        bar.update(1)
        bar.set_postfix(tok_s=f"{tokens_before / max(time.perf_counter() - started, 1e-9):,.0f}")
    count = 0
    for name, arrays in parts.items():
        array = np.concatenate(arrays, axis=0)
        count = len(array)
        save_npy_atomic(chunk_dir / f"c{chunk:06d}.{name}.npy", array)
    write_json_atomic(chunk_dir / f"c{chunk:06d}.json",
                      {"chunk": chunk, "entries": count, "batch_sizes": batch_sizes, "has_rows": all(has_rows)})
    return count


def _merge_and_publish(model: Any, model_fp: dict, tok_fp: dict, work: Path, out_dir: Path, num_chunks: int,
                       layer: str, task: str, data: Mapping[str, Any] | None, knn: KNNParams,
                       auto_temperature: bool, index_factory: str, index_options: dict,
                       compute_seconds: float, world: int, overwrite: bool, progress: bool,
                       compute_dtype: str | None) -> None:
    merge_started = time.perf_counter()
    chunk_dir = work / "chunks"
    manifests = []
    for chunk in range(num_chunks):
        path = chunk_dir / f"c{chunk:06d}.json"
        if not path.is_file():
            raise DatastoreError(f"{path} is missing after all ranks finished: a rank failed; rerun to resume")
        try:
            manifests.append(read_json(path))
            for name in ARRAY_FILES:  # a damaged chunk fails every rerun the same way: say how to start over
                np.load(chunk_dir / f"c{chunk:06d}.{name}.npy", mmap_mode="r", allow_pickle=False)
        except (DatastoreError, ValueError, OSError, EOFError) as error:
            raise DatastoreError(f"{path.with_suffix('')}: a damaged chunk of the unfinished build ({error}); "
                                 "rerun with resume=False to start the build over") from None
    count = sum(m["entries"] for m in manifests)
    dim = int(np.load(chunk_dir / "c000000.keys.npy", mmap_mode="r").shape[1])
    if count == 0:
        raise DatastoreError("no target tokens in the batches (all labels are -100?)")

    # Concatenate in chunk order into memory-mapped arrays (one chunk in memory at a time).
    outs = {
        name: np.lib.format.open_memmap(work / file, mode="w+", dtype=ARRAY_DTYPES[name],
                                        shape=(count, dim) if name == "keys" else (count,))
        for name, file in ARRAY_FILES.items()
    }
    offset, row_offset = 0, 0
    for chunk, manifest in enumerate(tqdm(manifests, desc="datastore merge", unit="chunk",
                                          disable=not progress, dynamic_ncols=True)):
        n = manifest["entries"]
        for name in ARRAY_FILES:
            part = np.load(chunk_dir / f"c{chunk:06d}.{name}.npy", allow_pickle=False)
            if name == "rows" and not manifest["has_rows"]:
                # rows were in-batch indices: make them global by the sizes of the batches before
                sizes = np.asarray(manifest["batch_sizes"])
                starts = row_offset + np.concatenate([[0], np.cumsum(sizes)[:-1]])
                part = part + starts[np.load(chunk_dir / f"c{chunk:06d}.batch.npy")]
            outs[name][offset:offset + n] = part
        offset += n
        row_offset += sum(manifest["batch_sizes"])
    for array in outs.values():
        array.flush()
    del outs

    fields = {"key": {**describe_layer(model, layer), "distance": "squared L2 (faiss METRIC_L2)"}, "task": task,
              "data": json.loads(json.dumps(data or {}, default=str)), "model": model_fp, "tokenizer": tok_fp}

    def drop_chunks() -> None:  # only now: a crash while indexing resumes from them without recomputing keys
        shutil.rmtree(chunk_dir)
        (work / PROGRESS_FILE).unlink()

    merge_seconds = time.perf_counter() - merge_started
    finish_store(work, out_dir, fields, {**knn.to_json(), "source": "default"}, index_factory=index_factory,
                 index_options=index_options, auto_temperature=auto_temperature, overwrite=overwrite,
                 progress=progress, before_publish=drop_chunks,
                 seconds_before=compute_seconds + merge_seconds,
                 build={"world_size": world, "device": str(next(model.parameters()).device),
                        "dtype": _dtype_name(next(model.parameters()).dtype),
                        "compute_dtype": compute_dtype or _dtype_name(next(model.parameters()).dtype),
                        "compute_seconds": round(compute_seconds, 3),
                        "merge_seconds": round(merge_seconds, 3),
                        "tokens_per_second": round(count / max(compute_seconds, 1e-9), 1) if world == 1 else None})
