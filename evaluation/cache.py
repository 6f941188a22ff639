"""Small on-disk caches of derived data (never of scores), written atomically.

What is cached, each keyed by everything that can change it:

- ``meteor/``: per vocabulary token its Porter stem and the WordNet synonyms of that stem (key: vocabulary
  hash, nltk version, WordNet files);
- ``references/``: per reference SMILES its RDKit results (InChI, fingerprints, canonical SMILES), and the
  FCD statistics (mean, covariance of ChemNet activations) of a reference list (key: the reference strings,
  rdkit / fcd / torch versions) -- the same idea as FID's precomputed reference statistics, since one test
  set is scored against many systems.

Reference lists shorter than ``MIN_CACHED_REFERENCES`` are not cached. Set ``T2M_CACHE_DIR`` to move the
cache, or pass ``use_cache=False`` / ``--no-cache`` to neither read nor write it. A cache file that fails
to load is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from evaluation.wordnet import cache_dir

CACHE_FORMAT = "1"
MIN_CACHED_REFERENCES = 500  # smaller reference lists are cheap to recompute: not worth a cache file


def cache_path(kind: str, key_parts: list[str], suffix: str) -> Path:
    """``<cache>/<kind>/<sha256 of key parts>.<suffix>``."""
    digest = hashlib.sha256("\x1f".join([CACHE_FORMAT, *key_parts]).encode("utf-8")).hexdigest()[:32]
    return cache_dir() / kind / f"{digest}.{suffix}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and os.replace (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def strings_digest(strings: list[str]) -> str:
    """sha256 of a list of strings (order matters)."""
    h = hashlib.sha256()
    for s in strings:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
