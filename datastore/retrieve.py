"""Retriever: the k nearest stored keys of a batch of decoder states, and their values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from datastore.index import exact_index, load_index


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
    """Searches a FAISS index over a store's keys and maps entry ids to value tokens."""

    def __init__(self, index: Any, values: np.ndarray, description: str = "") -> None:
        self.index = index
        self.values = torch.from_numpy(np.asarray(values, dtype=np.int64))  # (count,)
        self.description = description

    @classmethod
    def from_store(cls, store: Any, nprobe: int | None = None, ef_search: int | None = None,
                   use_gpu: bool | str = "auto", exact: bool = False) -> "Retriever":
        """The store's saved index (with its saved nprobe / efSearch unless given), or an exact
        in-memory index over its keys when ``exact`` or when the store was built without an index."""
        meta = store.meta.get("index", {})
        if exact or meta.get("factory", "none") == "none":
            return cls(exact_index(store.keys, use_gpu=use_gpu), store.values, "Flat (exact, in memory)")
        nprobe = meta.get("nprobe") if nprobe is None else nprobe
        ef_search = meta.get("efSearch") if ef_search is None else ef_search
        index = load_index(store.index_path, nprobe=nprobe, ef_search=ef_search, use_gpu=use_gpu)
        return cls(index, store.values, f"{meta['factory']} (nprobe={nprobe}, efSearch={ef_search})")

    def search(self, queries: torch.Tensor, k: int) -> Neighbours:
        """The ``k`` nearest entries of each row of ``queries`` (n, dim)."""
        device = queries.device
        array = np.ascontiguousarray(queries.detach().to("cpu", torch.float32).numpy())  # (n, dim)
        distances, indices = self.index.search(array, int(k))  # (n, k), (n, k)
        indices_t = torch.from_numpy(indices)
        missing = indices_t < 0
        values = self.values[indices_t.clamp(min=0)].masked_fill(missing, -1)  # (n, k)
        distances_t = torch.from_numpy(distances).masked_fill(missing, float("inf"))
        return Neighbours(distances_t.to(device), indices_t.to(device), values.to(device))


class RowRestrictedRetriever:
    """Exact search among the entries of a few training rows per input (SK-MT, Dai et al. 2023: retrieve
    the pairs nearest the input sentence first, then kNN-MT over their tokens only).

    :meth:`restrict` takes, for each input of the next ``generate`` batch, the store row ids whose entries
    it may use; :meth:`search` then gets that batch's hypotheses, input-major as ``generate`` lays them out
    (every input has the same number: beams, samples or 1), and searches each input's entries exactly.
    A store row id not in the store contributes nothing."""

    def __init__(self, store: Any) -> None:
        rows = np.asarray(store.rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self._bounds = np.searchsorted(rows[order], np.arange(int(rows.max()) + 2 if len(rows) else 1))
        self._order = order
        self._keys = store.keys  # (count, dim) float16, memory-mapped: each input's entries are gathered once
        self.values = torch.from_numpy(np.asarray(store.values, dtype=np.int64))
        self._inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (entries, keys, |key|²)
        self.description = "exact, restricted to each input's rows"

    def entries_of(self, rows: Any) -> np.ndarray:
        """The entry ids of the store rows ``rows`` (in row order)."""
        last = len(self._bounds) - 2
        parts = [self._order[self._bounds[r]:self._bounds[r + 1]] for r in map(int, rows) if 0 <= r <= last]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def restrict(self, rows_per_input: list[Any]) -> None:
        """Set, for each input of the next batch, the store rows whose entries its hypotheses may retrieve."""
        self._inputs = []
        for rows in rows_per_input:
            entries = np.sort(self.entries_of(rows))
            keys = torch.from_numpy(np.asarray(self._keys[entries], dtype=np.float32))
            self._inputs.append((torch.from_numpy(entries.astype(np.int64)), keys, (keys * keys).sum(1)))

    def search(self, queries: torch.Tensor, k: int) -> Neighbours:
        """The ``k`` nearest allowed entries of each row of ``queries`` (n, dim): squared L2, exact."""
        n, inputs = queries.shape[0], len(self._inputs)
        if not inputs or n % inputs:
            raise RuntimeError(f"RowRestrictedRetriever: {n} hypotheses for {inputs} restricted inputs; call "
                               "restrict() with one row list per input of the batch before generate")
        per_input = n // inputs
        device = queries.device
        queries = queries.detach().to("cpu", torch.float32)
        distances = torch.full((n, k), float("inf"))
        indices = torch.full((n, k), -1, dtype=torch.int64)
        for i, (entries, keys, key_norms) in enumerate(self._inputs):
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
        values = self.values[indices.clamp(min=0)].masked_fill(missing, -1)
        return Neighbours(distances.to(device), indices.to(device), values.to(device))
