"""Retriever: the k nearest stored keys of a batch of decoder states, and their values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from datastore.index import exact_index, open_index


@dataclass(frozen=True)
class Neighbours:
    """Search results for n queries, on the queries' device.

    ``distances``: (n, k) float32 squared L2 distance, ``inf`` where the index found fewer than k;
    ``indices``: (n, k) int64 entry ids into the store, -1 where missing;
    ``values``: (n, k) int64 token id of each neighbour, -1 where missing.
    """

    distances: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor


class Retriever:
    """Searches a FAISS index over a store's keys and maps entry ids to value tokens.

    ``values`` may be memory-mapped (the store's ``values.npy``): only the found ids are read. With
    ``rerank`` and ``keys`` (a lossy PQ index) the index's ``rerank * k`` nearest are re-ranked by exact
    squared L2 distance to their float16 keys, read from the memory-mapped ``keys``."""

    def __init__(self, index: Any, values: np.ndarray, description: str = "", *, keys: np.ndarray | None = None,
                 rerank: int | None = None, state: dict[str, Any] | None = None) -> None:
        self.index = index
        self.values = values  # (count,) int32 or int64, memory-mapped or not
        self.description = description
        self.keys = keys
        self.rerank = int(rerank) if rerank and keys is not None else None
        self.state = dict(state or {})  # what is in force (datastore.index.open_index)

    @classmethod
    def from_store(cls, store: Any, nprobe: int | None = None, ef_search: int | None = None,
                   use_gpu: bool | str = "auto", exact: bool = False, mmap: bool = True,
                   rerank: int | None = None) -> "Retriever":
        """The store's saved index (with its saved nprobe / efSearch / rerank unless given; memory-mapped
        on the CPU unless ``mmap=False``), or exact search over its keys when ``exact`` or when the store
        was built without an index (in memory for small stores, streamed from the mapped keys for large)."""
        meta = store.meta.get("index", {})
        if exact or meta.get("factory", "none") == "none":
            index = exact_index(store.keys, use_gpu=use_gpu)
            how = "in memory" if hasattr(index, "is_trained") else "streamed from the mapped keys"
            return cls(index, store.values, f"Flat (exact, {how})", state={"type": type(index).__name__})
        nprobe = meta.get("nprobe") if nprobe is None else nprobe
        ef_search = meta.get("efSearch") if ef_search is None else ef_search
        rerank = meta.get("rerank") if rerank is None else (rerank or None)
        index, state = open_index(store.index_path, nprobe=nprobe, ef_search=ef_search, use_gpu=use_gpu,
                                  mmap=mmap)
        where = "GPU" if state["on_gpu"] else ("CPU, mapped" if state["mapped"] else "CPU, in memory")
        rerank_text = f", re-ranked from {rerank}k" if rerank else ""
        return cls(index, store.values,
                   f"{meta['factory']} (nprobe={state.get('nprobe')}, efSearch={state.get('efSearch')}{rerank_text}; "
                   f"{where})", keys=store.keys, rerank=rerank, state=state)

    def _rerank(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` of each row's shortlist ``ids`` (n, m) nearest by exact distance to their keys."""
        found = ids >= 0
        keys = np.asarray(self.keys[np.where(found, ids, 0).ravel()], dtype=np.float32).reshape(*ids.shape, -1)
        distances = ((keys - queries[:, None, :]) ** 2).sum(-1)  # (n, m)
        distances[~found] = np.inf
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)

    def search(self, queries: torch.Tensor, k: int) -> Neighbours:
        """The ``k`` nearest entries of each row of ``queries`` (n, dim)."""
        device = queries.device
        array = np.ascontiguousarray(queries.detach().to("cpu", torch.float32).numpy())  # (n, dim)
        if self.rerank:
            _, shortlist = self.index.search(array, int(k) * self.rerank)  # (n, rerank * k)
            distances, indices = self._rerank(array, shortlist, int(k))
        else:
            distances, indices = self.index.search(array, int(k))  # (n, k), (n, k)
        missing = indices < 0
        values = np.asarray(self.values[np.where(missing, 0, indices)], dtype=np.int64)
        values_t = torch.from_numpy(values).masked_fill(torch.from_numpy(missing), -1)  # (n, k)
        distances_t = torch.from_numpy(np.ascontiguousarray(distances, dtype=np.float32)).masked_fill(
            torch.from_numpy(missing), float("inf"))
        return Neighbours(distances_t.to(device), torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(device),
                          values_t.to(device))


@dataclass(frozen=True)
class Restriction:
    """What each input of one ``generate`` batch may retrieve (:meth:`RowRestrictedRetriever.restriction`):
    per input, the entry ids of its allowed store rows, their keys (float32) and the keys' squared norms."""

    inputs: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]


class RowRestrictedRetriever:
    """Exact search among the entries of a few training rows per input (SK-MT, Dai et al. 2023: retrieve
    the pairs nearest the input sentence first, then kNN-MT over their tokens only).

    :meth:`restriction` gathers, for each input of a ``generate`` batch, the entries of the store rows it
    may use; :meth:`search` takes that :class:`Restriction` with the batch's hypotheses, input-major as
    ``generate`` lays them out (every input has the same number: beams, samples or 1), and searches each
    input's entries exactly. The retriever itself keeps no per-batch state. A store row id not in the store
    contributes nothing."""

    def __init__(self, store: Any) -> None:
        rows = np.asarray(store.rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self._bounds = np.searchsorted(rows[order], np.arange(int(rows.max()) + 2 if len(rows) else 1))
        self._order = order
        self._keys = store.keys  # (count, dim) float16, memory-mapped: each input's entries are gathered once
        self.values = store.values  # (count,) int32, memory-mapped: only the found ids are read
        self.description = "exact, restricted to each input's rows"

    def entries_of(self, rows: Any) -> np.ndarray:
        """The entry ids of the store rows ``rows`` (in row order)."""
        last = len(self._bounds) - 2
        parts = [self._order[self._bounds[r]:self._bounds[r + 1]] for r in map(int, rows) if 0 <= r <= last]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def restriction(self, rows_per_input: Sequence[Any]) -> Restriction:
        """For each input of a batch, the store rows whose entries its hypotheses may retrieve, gathered once
        for every :meth:`search` of the batch."""
        inputs = []
        for rows in rows_per_input:
            entries = np.sort(self.entries_of(rows))
            keys = torch.from_numpy(np.asarray(self._keys[entries], dtype=np.float32))
            inputs.append((torch.from_numpy(entries.astype(np.int64)), keys, (keys * keys).sum(1)))
        return Restriction(tuple(inputs))

    def search(self, queries: torch.Tensor, k: int, restriction: Restriction) -> Neighbours:
        """The ``k`` nearest entries of each row of ``queries`` (n, dim) that ``restriction`` allows its
        input: squared L2, exact."""
        n, inputs = queries.shape[0], len(restriction.inputs)
        if not inputs or n % inputs:
            raise RuntimeError(f"RowRestrictedRetriever: {n} hypotheses for {inputs} restricted inputs; give a "
                               "restriction with one row list per input of the batch")
        per_input = n // inputs
        device = queries.device
        queries = queries.detach().to("cpu", torch.float32)
        distances = torch.full((n, k), float("inf"))
        indices = torch.full((n, k), -1, dtype=torch.int64)
        for i, (entries, keys, key_norms) in enumerate(restriction.inputs):
            found = min(k, len(entries))
            if not found:
                continue
            part = slice(i * per_input, (i + 1) * per_input)
            q = queries[part]
            d = (q * q).sum(1, keepdim=True) - 2 * q @ keys.T + key_norms[None]  # (per_input, m)
            best, pos = torch.topk(d.clamp(min=0), found, dim=1, largest=False)
            distances[part, :found] = best
            indices[part, :found] = entries[pos]
        missing = indices < 0
        values = torch.from_numpy(np.asarray(self.values[indices.clamp(min=0).numpy()], dtype=np.int64))
        values = values.masked_fill(missing, -1)
        return Neighbours(distances.to(device), indices.to(device), values.to(device))
