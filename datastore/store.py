"""The on-disk datastore: a folder of plain ``.npy`` arrays, a FAISS index file and one JSON.

Layout of a finished store (``DIR/``)::

    datastore.json   shapes, dtypes, count, task, key layer, data files + hashes, model and tokenizer
                     fingerprints, default kNN parameters, index spec. Written last: a folder without it
                     is not a store.
    keys.npy         (count, dim) float16   decoder states (memory-mapped on load)
    values.npy       (count,)     int32     the target token that followed each state
    rows.npy         (count,)     int32     source row (index into the data the store was built from)
    positions.npy    (count,)     int32     target position t of the entry in that row
    index.faiss      the FAISS index over ``keys`` (``faiss.write_index``)

Nothing is pickled: arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

META_FILE = "datastore.json"
from datastore.index import INDEX_FILE  # noqa: E402  (the index names its own file)
from datastore.params import KNNParams  # noqa: E402  (the store saves its defaults as one)
FORMAT_NAME = "t2m-datastore"
FORMAT_VERSION = 1
ARRAY_FILES = {"keys": "keys.npy", "values": "values.npy", "rows": "rows.npy", "positions": "positions.npy"}
ARRAY_DTYPES = {"keys": "float16", "values": "int32", "rows": "int32", "positions": "int32"}

# Config fields that define what a model computes (others, like use_cache or dtype, do not).
_ARCH_CONFIG_KEYS = (
    "model_type", "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
    "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj",
    "layer_norm_epsilon", "scale_decoder_outputs", "tie_word_embeddings", "is_gated_act", "dense_act_fn",
    "hidden_size", "num_hidden_layers", "num_attention_heads",
)
_SAMPLES_PER_TENSOR = 4096


class DatastoreError(RuntimeError):
    """A store folder that is missing, incomplete or inconsistent."""


class DatastoreMismatchError(DatastoreError):
    """A store used with a model or tokenizer other than the one it was built from."""


# --------------------------------------------------------------------------------------------- hashes


def _json_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(model: Any) -> dict[str, Any]:
    """What identifies a model's computation: the sha256 of its architecture config fields and a
    sha256 over every state-dict tensor's name, shape and an evenly strided sample of up to 4,096 of
    its values rounded to float16 (so the same weights in float32 or float16 match; bfloat16 does not).

    Returns ``{"fingerprint", "config_sha256", "weights_sha256", "name_or_path"}``.
    """
    import torch

    config = model.config
    config_dict = config.to_dict()
    arch = {key: config_dict.get(key, getattr(config, key, None)) for key in _ARCH_CONFIG_KEYS}
    arch = {key: value for key, value in arch.items() if value is not None}
    config_hash = _json_sha256(arch)

    digest = hashlib.sha256()
    with torch.no_grad():
        state = model.state_dict()
        for name in sorted(state):
            tensor = state[name]
            if not torch.is_tensor(tensor) or not tensor.is_floating_point():
                continue
            flat = tensor.detach().reshape(-1)
            if flat.numel() > _SAMPLES_PER_TENSOR:
                # on the CPU whatever the model's device (the same picks everywhere); float32 rounds the last
                # of more than 2**24 values up to numel (MolT5-base's 32,128 x 768 embedding): clamp it
                picks = torch.linspace(0, flat.numel() - 1, _SAMPLES_PER_TENSOR).long().clamp_(max=flat.numel() - 1)
                flat = flat[picks.to(flat.device)]
            digest.update(name.encode())
            digest.update(json.dumps(list(tensor.shape)).encode())
            digest.update(flat.to(torch.float16).cpu().numpy().tobytes())
    weights_hash = digest.hexdigest()
    return {
        "fingerprint": hashlib.sha256((config_hash + weights_hash).encode()).hexdigest()[:32],
        "config_sha256": config_hash,
        "weights_sha256": weights_hash,
        "name_or_path": str(getattr(config, "_name_or_path", "") or ""),
    }


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """sha256 of the tokenizer's vocabulary (token -> id, sorted by id) and special-token ids.

    Returns ``{"fingerprint", "vocab_size", "class"}``; the class name is informative only (a slow and a
    fast tokenizer with the same vocabulary match).
    """
    vocab = tokenizer.get_vocab()
    items = sorted(vocab.items(), key=lambda item: (item[1], item[0]))
    specials = {
        name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "eos", "unk", "bos")
    }
    return {
        "fingerprint": _json_sha256({"vocab": items, "specials": specials})[:32],
        "vocab_size": len(vocab),
        "class": type(tokenizer).__name__,
    }


# ----------------------------------------------------------------------------------------- atomic io


def _write_atomic(path: str | os.PathLike, write: Any) -> None:
    """``write(handle)`` into a temporary file beside ``path``, flushed to disk, then ``os.replace``d onto
    ``path`` with the mode a plain ``open`` gives: a reader sees the old file or the new one, never half of
    one. The store's one atomic write (datastore does not import t2m, whose :mod:`t2m.io` does the same)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0o022)  # mkstemp's file is private (0600): give it the mode a plain open would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (:func:`_write_atomic`)."""
    _write_atomic(path, lambda handle: handle.write((json.dumps(data, indent=2, sort_keys=False) + "\n").encode()))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` ``array`` to ``path`` atomically (:func:`_write_atomic`)."""
    _write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DatastoreError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg}); rebuild the store with "
            "`t2m datastore build`"
        ) from error


def check_array_file(file: Path, spec: Mapping[str, Any], meta_path: Path) -> None:
    """Raise :class:`DatastoreError` when the ``.npy`` ``file`` is not the size its header and ``spec`` (its
    entry in ``datastore.json``) make it: a copy cut short would otherwise fail as "mmap length is greater
    than file size"."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError) as error:
        raise DatastoreError(f"{file}: not a readable .npy file ({error}); copy it again or rebuild the store with "
                             "`t2m datastore build --overwrite`") from None
    expected_shape = [int(n) for n in spec.get("shape", shape)]
    expected = offset + int(np.prod(expected_shape, dtype=np.int64)) * np.dtype(spec.get("dtype", dtype)).itemsize
    actual = file.stat().st_size
    if actual != expected:
        raise DatastoreError(
            f"{file}: {actual:,} bytes, but {meta_path.name} says {expected_shape} {spec.get('dtype')} "
            f"({expected:,} bytes): the file is {'truncated' if actual < expected else 'too long'}; copy it again or "
            "rebuild the store with `t2m datastore build --overwrite`")


# ------------------------------------------------------------------------------------------- the store


@dataclass
class Datastore:
    """A loaded store: memory-mapped arrays plus its metadata. Build one with
    :func:`datastore.build.build_datastore`, open one with :meth:`Datastore.load`."""

    path: Path
    meta: dict[str, Any]
    keys: np.ndarray  # (count, dim) float16, memory-mapped
    values: np.ndarray  # (count,) int32
    rows: np.ndarray  # (count,) int32
    positions: np.ndarray  # (count,) int32
    _retrievers: dict[tuple, Any] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None, tokenizer: Any = None,
             mmap: bool = True, task: str | None = None) -> "Datastore":
        """Open the store in ``path``; when ``model`` / ``tokenizer`` / ``task`` are given, refuse them
        (:class:`DatastoreMismatchError`) unless they are the ones the store was built from / for. Each array
        file's size is checked against its ``.npy`` header and ``datastore.json`` first (a truncated copy is
        named, not memory-mapped)."""
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            hint = "; give the folder `t2m datastore build --out` wrote"
            partial = sorted(path.parent.glob(f"{path.name}.tmp-*"))
            if partial:
                hint = f" (an unfinished build is in {partial[0]}: rerun the same build command to resume it)"
            raise DatastoreError(f"{meta_path} not found: {path} is not a finished datastore{hint}")
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT_NAME or int(meta.get("format_version", -1)) > FORMAT_VERSION:
            raise DatastoreError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('format_version')!r} is not "
                f"{FORMAT_NAME!r} <= {FORMAT_VERSION}; rebuild it with this version of t2m"
            )
        arrays = {}
        try:
            count = int(meta["count"])
            specs = dict(meta["arrays"])
        except (KeyError, TypeError, ValueError):
            raise DatastoreError(f"{meta_path}: no 'count' or 'arrays' entry (not written by `t2m datastore build`?); "
                                 "rebuild the store with `t2m datastore build --overwrite`") from None
        for name, spec in specs.items():
            file = path / spec["file"]
            if not file.is_file():
                raise DatastoreError(f"{file} is missing: the store in {path} is incomplete; copy the whole folder "
                                     "again or rebuild it with `t2m datastore build --overwrite`")
            check_array_file(file, spec, meta_path)
            try:
                array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise DatastoreError(f"{file}: cannot be read ({error}); copy it again or rebuild the store with "
                                     "`t2m datastore build --overwrite`") from None
            if list(array.shape) != list(spec["shape"]) or str(array.dtype) != spec["dtype"]:
                raise DatastoreError(
                    f"{file}: shape {list(array.shape)} dtype {array.dtype} but {meta_path} says "
                    f"{spec['shape']} {spec['dtype']}; the store is corrupt, rebuild it"
                )
            if array.shape[0] != count:
                raise DatastoreError(f"{file}: {array.shape[0]} entries but {meta_path} says count={count}")
            arrays[name] = array
        index_meta = meta.get("index") or {}
        if str(index_meta.get("factory", "none")).lower() != "none" and index_meta.get("file"):
            index_file = path / index_meta["file"]
            size = index_file.stat().st_size if index_file.is_file() else None
            expected = index_meta.get("bytes")
            if size is None or size == 0 or (expected is not None and size != int(expected)):
                what = "is missing" if size is None else f"holds {size:,} bytes" + (
                    f", but {META_FILE} says {int(expected):,}" if expected is not None else "")
                raise DatastoreError(f"{index_file} {what}: copy the store's folder again, or rebuild the store with "
                                     "`t2m datastore build --overwrite` (pairs=N searches without it)")
        store = cls(path=path, meta=meta, keys=arrays["keys"], values=np.asarray(arrays["values"]),
                    rows=arrays["rows"], positions=arrays["positions"])
        if model is not None or tokenizer is not None or task is not None:
            store.check_matches(model=model, tokenizer=tokenizer, task=task)
        return store

    # ---------------------------------------------------------------- properties

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def layer(self) -> str:
        return str(self.meta["key"]["layer"])

    @property
    def task(self) -> str | None:
        return self.meta.get("task")

    @property
    def knn_params(self) -> KNNParams:
        """The store's default (or tuned) k, lambda, temperature."""
        return KNNParams.from_json(self.meta["knn"])

    @property
    def index_path(self) -> Path:
        return self.path / self.meta.get("index", {}).get("file", INDEX_FILE)

    # ---------------------------------------------------------------- checks

    def check_matches(self, model: Any = None, tokenizer: Any = None, task: str | None = None) -> None:
        """Raise :class:`DatastoreMismatchError` naming both sides when ``model`` or ``tokenizer``
        is not the one this store was built from, or ``task`` not the one it was built for (a store built
        without a task, as tests do, serves any)."""
        meta_path = self.path / META_FILE
        if task is not None and self.task and self.task != task:
            raise DatastoreMismatchError(
                f"{self.path} is a {self.task} datastore (its keys predict {self.task} tokens) and cannot serve a "
                f"{task} translation; give a store built with `t2m datastore build --task {task}`")
        if model is not None and self.meta.get("model"):  # a store written from arrays may name no model
            built = self.meta["model"]
            given = model_fingerprint(model)
            if given["fingerprint"] != built["fingerprint"]:
                what = "architecture config" if given["config_sha256"] != built["config_sha256"] else "weights"
                raise DatastoreMismatchError(
                    f"{meta_path}: this datastore was built from model {built.get('name_or_path') or '?'} "
                    f"(fingerprint {built['fingerprint']}), but the model given "
                    f"({given['name_or_path'] or 'unnamed'}, fingerprint {given['fingerprint']}) differs in "
                    f"its {what}. Its keys are another model's hidden states: use the model it was built "
                    f"from, or rebuild the store with `t2m datastore build --model <your model> ...`."
                )
        if tokenizer is not None and self.meta.get("tokenizer"):
            built = self.meta["tokenizer"]
            given = tokenizer_fingerprint(tokenizer)
            if given["fingerprint"] != built["fingerprint"]:
                raise DatastoreMismatchError(
                    f"{meta_path}: this datastore was built with a tokenizer of {built['vocab_size']} tokens "
                    f"(fingerprint {built['fingerprint']}), but the tokenizer given has {given['vocab_size']} "
                    f"tokens (fingerprint {given['fingerprint']}). Its values are token ids of the other "
                    f"vocabulary: use the matching tokenizer or rebuild the store."
                )

    # ---------------------------------------------------------------- updates

    def update_meta(self, changes: Mapping[str, Any]) -> None:
        """Merge ``changes`` (top-level keys) into ``datastore.json`` atomically, e.g. tuned kNN params."""
        meta = dict(self.meta)
        meta.update(changes)
        write_json_atomic(self.path / META_FILE, meta)
        self.meta = meta

    def set_knn_params(self, params: KNNParams, source: str, extra: Mapping[str, Any] | None = None) -> None:
        """Store ``params`` as the defaults for decoding with this store; ``source`` says where they
        came from (e.g. ``"tune: dev BLEU-4 0.41"``)."""
        knn = params.to_json()
        knn["source"] = source
        if extra:
            knn.update(extra)
        self.update_meta({"knn": knn})

    # ---------------------------------------------------------------- retrieval

    def retriever(self, nprobe: int | None = None, ef_search: int | None = None,
                  use_gpu: bool | str = "auto", exact: bool = False, mmap: bool = True,
                  rerank: int | None = None) -> Any:
        """A :class:`datastore.retrieve.Retriever` over this store (cached per settings on this object): its
        index memory-mapped on the CPU (``mmap=False`` reads it into this process), or exact search."""
        from datastore.retrieve import Retriever

        key = (nprobe, ef_search, str(use_gpu), exact, mmap, rerank)
        if key not in self._retrievers:
            self._retrievers[key] = Retriever.from_store(self, nprobe=nprobe, ef_search=ef_search,
                                                         use_gpu=use_gpu, exact=exact, mmap=mmap, rerank=rerank)
        return self._retrievers[key]

    def __repr__(self) -> str:
        return (f"Datastore({str(self.path)!r}, count={self.count}, dim={self.dim}, layer={self.layer!r}, "
                f"task={self.task!r}, index={self.meta.get('index', {}).get('factory')!r})")
