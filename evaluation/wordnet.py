"""Find WordNet 3.0 offline, for METEOR's synonym matching.

Where it is looked for, in order:

1. the project's nltk data directory, ``$T2M_NLTK_DATA`` or ``<cache>/nltk_data`` (``<cache>`` is
   ``$T2M_CACHE_DIR`` or ``~/.cache/t2m``), which ``t2m setup`` fills from Debian's ``wordnet-base`` and
   ``wordnet-sense-index`` packages;
2. nltk's own search path (``$NLTK_DATA``, ``~/nltk_data``, ``<sys.prefix>/nltk_data``, ``/usr/share/nltk_data``,
   ...), where ``python -m nltk.downloader wordnet`` puts it on a machine with internet.

In each, ``corpora/wordnet/`` (a directory) or ``corpora/wordnet.zip``. The version is read from the
license header of ``data.adj`` as nltk does and must be 3.0 (the version MolT5's numbers were made with).
Nothing here imports nltk; :func:`load_wordnet_reader` does, when synonyms must actually be computed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

# the files nltk's WordNetCorpusReader reads (its _FILES)
WORDNET_FILES = (
    "cntlist.rev", "lexnames", "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)  # fmt: skip
REQUIRED_VERSION = "3.0"
_VERSION_RE = re.compile(r"Word[nN]et (\d+\+?|\d+\.\d+) Copyright")


class WordNetMissingError(RuntimeError):
    """WordNet 3.0 is not installed where t2m or nltk look for it."""


def cache_dir() -> Path:
    """The project's cache directory: ``$T2M_CACHE_DIR``, else ``$XDG_CACHE_HOME/t2m``, else ``~/.cache/t2m``."""
    if os.environ.get("T2M_CACHE_DIR"):
        return Path(os.environ["T2M_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "t2m"


def project_nltk_data_dir() -> Path:
    """The nltk data directory ``t2m setup`` writes: ``$T2M_NLTK_DATA`` or ``<cache>/nltk_data``."""
    if os.environ.get("T2M_NLTK_DATA"):
        return Path(os.environ["T2M_NLTK_DATA"]).expanduser()
    return cache_dir() / "nltk_data"


def nltk_default_paths() -> list[Path]:
    """nltk.data.path as nltk builds it by default, without importing nltk (POSIX locations)."""
    paths = [Path(p).expanduser() for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    paths.append(Path("~/nltk_data").expanduser())
    paths += [
        Path(sys.prefix, "nltk_data"),
        Path(sys.prefix, "share", "nltk_data"),
        Path(sys.prefix, "lib", "nltk_data"),
    ]
    paths += [
        Path(p)
        for p in (
            "/usr/share/nltk_data",
            "/usr/local/share/nltk_data",
            "/usr/lib/nltk_data",
            "/usr/local/lib/nltk_data",
        )
    ]
    if "nltk.data" in sys.modules:  # somebody configured nltk in this process: honour it too
        paths += [Path(str(getattr(p, "path", p))) for p in sys.modules["nltk.data"].path]
    return paths


def candidate_roots() -> list[Path]:
    roots: list[Path] = []
    for p in [project_nltk_data_dir(), *nltk_default_paths()]:
        if p not in roots:
            roots.append(p)
    return roots


@dataclass(frozen=True)
class WordNetLocation:
    """A WordNet corpus found on disk: ``path`` is the ``wordnet`` directory or ``wordnet.zip``."""

    root: Path  # the nltk data directory holding corpora/
    path: Path
    is_zip: bool
    version: str | None

    def describe(self) -> str:
        return f"WordNet {self.version} at {self.path}"

    def fingerprint(self) -> str:
        """A cheap identity of the data files (version, names, sizes) for cache keys."""
        h = hashlib.sha256(f"{self.version}".encode())
        if self.is_zip:
            with zipfile.ZipFile(self.path) as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    h.update(f"{info.filename}:{info.file_size}:{info.CRC}\n".encode())
        else:
            for name in WORDNET_FILES:
                h.update(f"{name}:{(self.path / name).stat().st_size}\n".encode())
        return h.hexdigest()[:16]


def _zip_member_names(path: Path) -> set[str] | None:
    try:
        with zipfile.ZipFile(path) as z:
            return set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return None


def _read_version(lines) -> str | None:
    for i, line in enumerate(lines):
        m = _VERSION_RE.search(line)
        if m:
            return m.group(1)
        if i > 200:
            return None
    return None


def read_wordnet_version(path: Path, is_zip: bool) -> str | None:
    """WordNet version from the license header of data.adj (nltk's get_version); None if not found."""
    try:
        if is_zip:
            with zipfile.ZipFile(path) as z, z.open("wordnet/data.adj") as f:
                return _read_version(line.decode("utf-8", "replace") for line in f)
        with open(path / "data.adj", encoding="utf-8", errors="replace") as f:
            return _read_version(f)
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def find_wordnet() -> WordNetLocation | None:
    """The first complete WordNet corpus in :func:`candidate_roots`; None if there is none."""
    for root in candidate_roots():
        d = root / "corpora" / "wordnet"
        if d.is_dir() and all((d / f).is_file() for f in WORDNET_FILES):
            return WordNetLocation(root, d, False, read_wordnet_version(d, False))
        z = root / "corpora" / "wordnet.zip"
        if z.is_file():
            names = _zip_member_names(z)
            if names is not None and all(f"wordnet/{f}" in names for f in WORDNET_FILES):
                return WordNetLocation(root, z, True, read_wordnet_version(z, True))
    return None


def missing_message() -> str:
    looked = "\n  ".join(str(r / "corpora" / "wordnet") for r in candidate_roots())
    return (
        "METEOR needs WordNet 3.0 synonyms, and no complete WordNet corpus was found (looked in:\n  "
        f"{looked}).\n"
        "Fix: run `t2m setup` (installs Debian's wordnet-base and wordnet-sense-index with apt-get and lays them out "
        f"as an nltk corpus in {project_nltk_data_dir()}), or put nltk's 'wordnet' corpus in one of the folders "
        "above (`python -m nltk.downloader wordnet` on a machine with internet). "
        "t2m never computes METEOR without synonyms."
    )


def require_wordnet() -> WordNetLocation:
    """The WordNet 3.0 corpus to use; raises WordNetMissingError (saying how to get it) if absent or another version."""
    loc = find_wordnet()
    if loc is None:
        raise WordNetMissingError(missing_message())
    if loc.version != REQUIRED_VERSION:
        raise WordNetMissingError(
            f"{loc.path} holds WordNet {loc.version or '(unknown version)'}, but MolT5's METEOR numbers use WordNet "
            f"{REQUIRED_VERSION}. Run `t2m setup` to install WordNet 3.0 into {project_nltk_data_dir()} "
            "(searched first)."
        )
    return loc


def load_wordnet_reader(loc: WordNetLocation):
    """An nltk WordNetCorpusReader over ``loc`` (imports nltk: about a second)."""
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # nltk refuses to open corpus files outside its data path
    if str(loc.root) not in [str(getattr(p, "path", p)) for p in nltk.data.path]:
        nltk.data.path.append(str(loc.root))
    pointer = (
        nltk.data.ZipFilePathPointer(str(loc.path), "wordnet/")
        if loc.is_zip
        else nltk.data.FileSystemPathPointer(str(loc.path))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used
        return WordNetCorpusReader(pointer, None)
