"""``KNNParams``: the one type that carries kNN-MT's parameters (k, λ, T and the retrieval scope), and the
one check of each (:data:`RULES`; a ValueError names the field: ``lambda_=1.5: must be in [0, 1]``). The
store saves its defaults (tuned ones when tuned) as one; decoding, tuning and the mixture
(:mod:`datastore.combine`) all take it or check their numbers here. ``PartialKNNParams``: a call's choice
of some of them, the rest the store's. No torch: the store's JSON and the command line read it without
loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

# each parameter's rule: (lowest value, highest value, lowest excluded, what the rule says), the one check of each
RULES: dict[str, tuple[float, float | None, bool, str]] = {
    "k": (1, None, False, "must be 1 or more"),
    "lambda_": (0.0, 1.0, False, "must be in [0, 1]"),
    "temperature": (0.0, None, True, "must be > 0"),
    "pairs": (0, None, False, "must be 0 or more (0: the whole store)"),
}


def check_param(name: str, value: float) -> float:
    """``value`` when parameter ``name`` (a field of :class:`KNNParams`) may take it; a ValueError naming the
    field otherwise, e.g. ``lambda_=1.5: must be in [0, 1]``."""
    low, high, low_open, rule = RULES[name]
    if not (value > low if low_open else value >= low) or (high is not None and value > high):
        raise ValueError(f"{name}={value}: {rule}")
    return value


def check_lambda(lambda_: float) -> float:
    """``lambda_`` when it is a weight in [0, 1]; a ValueError naming it otherwise."""
    return check_param("lambda_", lambda_)


def check_temperature(temperature: float) -> float:
    """``temperature`` when it is > 0; a ValueError naming it otherwise."""
    return check_param("temperature", temperature)


@dataclass(frozen=True)
class KNNParams:
    """Retrieval-augmented decoding parameters: ``k`` neighbours, weight ``lambda_`` of the kNN
    distribution, softmax ``temperature`` over negative squared L2 distances; ``pairs``: search only the
    entries of each input's ``pairs`` nearest source rows (a caller that knows how to find them, e.g.
    :mod:`t2m.neighbours.pairs`, passes them to :meth:`datastore.RowRestrictedRetriever.search`), 0 the whole store
    (None is read as 0)."""

    k: int = 16
    lambda_: float = 0.3
    temperature: float = 10.0
    pairs: int = 0

    def __post_init__(self) -> None:
        if self.pairs is None:
            object.__setattr__(self, "pairs", 0)
        for name in RULES:
            check_param(name, getattr(self, name))

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
        The one place a partial choice (:class:`PartialKNNParams`) meets the store's defaults."""
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


@dataclass(frozen=True)
class PartialKNNParams:
    """A partial choice of :class:`KNNParams`: the fields given (not None) replace a store's own (tuned)
    ones when the store is known (:meth:`over`); each given value is checked as ``KNNParams`` checks it."""

    k: int | None = None
    lambda_: float | None = None
    temperature: float | None = None
    pairs: int | None = None

    def __post_init__(self) -> None:
        for name in RULES:
            if getattr(self, name) is not None:
                check_param(name, getattr(self, name))

    def given(self) -> dict[str, Any]:
        """The fields chosen, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def over(self, params: KNNParams) -> KNNParams:
        """``params`` with the fields given here substituted."""
        return params.replace(self.k, self.lambda_, self.temperature, self.pairs)
