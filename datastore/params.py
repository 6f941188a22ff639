"""``KNNParams``: the one type that carries kNN-MT's parameters (k, λ, T and the retrieval scope), and the
one check of each. The store saves its defaults (tuned ones when tuned) as one; decoding, tuning and
the mixture (:mod:`datastore.combine`) all take it or check their numbers here. No torch: the store's
JSON and the command line read it without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


def check_lambda(lambda_: float) -> float:
    """``lambda_`` when it is a weight in [0, 1]; a ValueError naming it otherwise."""
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lambda_}")
    return lambda_


def check_temperature(temperature: float) -> float:
    """``temperature`` when it is > 0; a ValueError naming it otherwise."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return temperature


@dataclass(frozen=True)
class KNNParams:
    """Retrieval-augmented decoding parameters: ``k`` neighbours, weight ``lambda_`` of the kNN
    distribution, softmax ``temperature`` over negative squared L2 distances; ``pairs``: search only the
    entries of each input's ``pairs`` nearest source rows (a caller that knows how to find them, e.g.
    :mod:`t2m.knn_pairs`, restricts a :class:`datastore.RowRestrictedRetriever`), 0 the whole store
    (None is read as 0)."""

    k: int = 16
    lambda_: float = 0.3
    temperature: float = 10.0
    pairs: int = 0

    def __post_init__(self) -> None:
        if self.pairs is None:
            object.__setattr__(self, "pairs", 0)
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        check_lambda(self.lambda_)
        check_temperature(self.temperature)
        if self.pairs < 0:
            raise ValueError(f"pairs must be >= 0 (0: the whole store), got {self.pairs}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": int(self.k), "lambda": float(self.lambda_), "temperature": float(self.temperature)}
        if self.pairs:
            out["pairs"] = int(self.pairs)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "KNNParams":
        return cls(k=int(data["k"]), lambda_=float(data["lambda"]), temperature=float(data["temperature"]),
                   pairs=int(data.get("pairs") or 0))

    def replace(self, k: int | None = None, lambda_: float | None = None,
                temperature: float | None = None, pairs: int | None = None) -> "KNNParams":
        """These parameters with the given ones (those not None) substituted (``pairs=0``: the whole store).
        The one place a partial choice (a command line's ``--knn-lambda`` alone) meets the store's defaults."""
        return KNNParams(
            k=self.k if k is None else int(k),
            lambda_=self.lambda_ if lambda_ is None else float(lambda_),
            temperature=self.temperature if temperature is None else float(temperature),
            pairs=self.pairs if pairs is None else int(pairs),
        )

    def describe(self) -> str:
        """``k=16 λ=0.3 T=10`` (and `` pairs=N`` for a restricted scope)."""
        scope = f" pairs={self.pairs}" if self.pairs else ""
        return f"k={self.k} λ={self.lambda_} T={self.temperature:.4g}{scope}"
