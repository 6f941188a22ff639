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
