"""The result of one evaluation: metrics, row count, signature, and notes; printable and JSON-able."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any


class PhaseTimer:
    """Wall time of consecutive phases: ``mark(name)`` closes the phase that ends now."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self._last = now


# how each metric prints (decimals) and reads (higher/lower is better)
_FORMATS = {
    "levenshtein": ("{:.4f}", "lower"),
    "fcd": ("{:.3f}", "lower"),
    "sacrebleu": ("{:.2f}", "higher"),
}


@dataclass
class EvalResult:
    task: str
    n: int
    metrics: dict[str, float]
    signature: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per phase, for --timing
    # with per_row=True: an evaluation.rows.RowStatistics (the metrics on any resample of the rows)
    rows: Any = field(default=None, repr=False, compare=False)

    def format_timings(self) -> str:
        return "  ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())

    def to_dict(self) -> dict:
        """``{"n", "task", "signature", "metrics", "notes"}``; NaN becomes null."""
        metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.metrics.items()}
        return {"n": self.n, "task": self.task, "signature": self.signature, "metrics": metrics, "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def signature_string(self) -> str:
        """sacrebleu-style one-line signature: ``key:value|key:value``."""
        return "|".join(f"{k}:{v}" for k, v in self.signature.items() if v is not None and k != "sacrebleu")

    def format_table(self, title: str | None = None) -> str:
        lines = [title or f"{self.task}  n={self.n}  mode={self.signature.get('mode')}"]
        width = max(len(k) for k in self.metrics) if self.metrics else 6
        lines.append(f"{'metric':<{width}}  {'value':>10}  better")
        for k, v in self.metrics.items():
            fmt, better = _FORMATS.get(k, ("{:.4f}", "higher"))
            value = "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
            lines.append(f"{k:<{width}}  {value:>10}  {better}")
        lines.append(f"signature: {self.signature_string()}")
        if self.signature.get("sacrebleu"):
            lines.append(f"sacrebleu signature: {self.signature['sacrebleu']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
