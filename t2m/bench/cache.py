"""The bench's files: the prediction cache (``predictions/<task>/<system>.tsv`` with a JSON sidecar) and
JSON written atomically, numpy values and paths included, NaN as null."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evaluation.predictions import read_predictions
from t2m.bench.systems import SystemRun
from t2m.data import write_predictions
from t2m.errors import OptionError
from t2m.io import write_json_atomic as write_json
from t2m.translate_job import Partial


def write_json_atomic(path: Path, data: Any) -> None:
    write_json(path, data, default=json_default)


def json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def clean(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def sha(strings: Sequence[str]) -> str:
    """A short digest of a list of strings (the rows a cached prediction file was made for)."""
    digest = hashlib.sha256()
    for s in strings:
        digest.update(s.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class PredictionCache:
    """``predictions/<task>/<system>.tsv`` (MolT5 format) plus a JSON sidecar with the settings they were
    made with; a later run with equal settings reuses them instead of decoding again."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def _paths(self, task: str, name: str) -> tuple[Path, Path]:
        safe = name.replace("/", "_").replace("+", "-").replace("@", "_").replace("%", "pct")
        return self.root / task / f"{safe}.tsv", self.root / task / f"{safe}.json"

    def load(self, task: str, name: str, key: dict[str, Any]) -> SystemRun | None:
        """The cached run of ``name`` made with settings ``key``, or None."""
        tsv, sidecar = self._paths(task, name)
        if not self.enabled or not (tsv.is_file() and sidecar.is_file()):
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            if meta.get("key") != json.loads(json.dumps(key, default=json_default)):
                return None
            outputs = list(read_predictions(tsv).outputs)
        except (OSError, ValueError, KeyError):
            return None
        if len(outputs) != meta.get("rows"):
            return None
        return SystemRun(name, meta["settings"], outputs, meta["seconds"], meta["output_tokens"], meta.get("flags", {}),
                         meta.get("neighbours"), meta.get("memory", {}), reused=True, first_beam=meta.get("first_beam"),
                         nbest=meta.get("nbest"))

    def open_partial(self, task: str, name: str, key: dict[str, Any]) -> Partial | None:
        """The rows of ``name`` with settings ``key`` that an interrupted bench decoded
        (``<system>.tsv.partial``, the format of ``t2m translate``'s), opened to keep more; rows kept for
        other settings are dropped. None when the cache is off."""
        if not self.enabled:
            return None
        tsv, _ = self._paths(task, name)
        partial = Partial(tsv)
        signature = json.loads(json.dumps(key, default=json_default))
        try:
            partial.load(signature, resume=True)
        except OptionError:  # another decoding's rows, or a damaged file: start over
            partial.load(signature, resume=False)
        partial.start(signature)
        if partial.done:
            print(f"bench: {task} {name}: resuming: {len(partial.done)} rows were decoded by an earlier run "
                  f"({partial.path})", file=sys.stderr)
        return partial

    def save(self, task: str, run: SystemRun, key: dict[str, Any], sources: Sequence[str],
             references: Sequence[str]) -> Path:
        tsv, sidecar = self._paths(task, run.name)
        tsv.parent.mkdir(parents=True, exist_ok=True)
        write_predictions(tsv, task, sources, references, run.outputs)
        write_json_atomic(sidecar, {"key": key, "settings": run.settings, "rows": len(run.outputs),
                                    "seconds": run.seconds, "output_tokens": run.output_tokens, "flags": run.flags,
                                    "neighbours": run.neighbours, "memory": run.memory, "first_beam": run.first_beam,
                                    "nbest": run.nbest})
        return tsv

