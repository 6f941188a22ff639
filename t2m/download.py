"""Dataset manifests, git blob ids, and fetching verified split files (download or local copy).

A manifest is a JSON file shipped inside the package (``t2m/manifests/chebi20.json``, read with
:mod:`importlib.resources`, so it works from any install) naming each split's file, download URL (``null``
for a local-only file), git blob id, row count and license; a manifest anywhere else can be passed by its
path. Files land in ``--to DIR``, else ``$T2M_DATA_DIR/<name>``, else ``data/downloads/<name>`` under the
working directory (the repository's ignored ``data/downloads/`` when run from its root).

A file is accepted only when its git blob id — ``sha1(b"blob <size>\\0" + bytes)``, what ``git hash-object
FILE`` prints — equals the manifest's; anything else is refused and not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from t2m.io import set_default_permissions

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

MANIFEST_PACKAGE = "t2m.manifests"
CHUNK = 1 << 20

# Outcomes of fetching one split.
PRESENT, COPIED, DOWNLOADED, MISSING, REFUSED, FAILED = "present", "copied", "downloaded", "missing", "refused", "failed"


def git_blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob: ``sha1(b"blob <len>\\0" + data)`` (as ``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_id(path: str | os.PathLike) -> str:
    """:func:`git_blob_id` of a file's bytes, read in chunks."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_download_dir() -> Path:
    """Where ``t2m data download NAME`` puts files without ``--to``: ``$T2M_DATA_DIR``, else
    ``data/downloads`` under the working directory."""
    if os.environ.get("T2M_DATA_DIR"):
        return Path(os.environ["T2M_DATA_DIR"]).expanduser()
    return Path("data") / "downloads"


def known_manifests() -> list[str]:
    """Names of the manifests that ship with t2m (``chebi20``, ...)."""
    folder = resources.files(MANIFEST_PACKAGE)
    return sorted(item.name[: -len(".json")] for item in folder.iterdir() if item.name.endswith(".json"))


def manifest_path(name_or_path: str | os.PathLike) -> Path | Traversable:
    """The manifest file: ``name_or_path`` itself if it is a ``.json`` file, else the packaged manifest of that
    name (an :mod:`importlib.resources` file). Raises ``FileNotFoundError`` listing the known manifests."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path
    packaged = resources.files(MANIFEST_PACKAGE) / f"{name_or_path}.json"
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"no manifest {str(name_or_path)!r} (known: {', '.join(known_manifests()) or 'none'}); "
        "pass a manifest's .json path"
    )


def load_manifest(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The manifest as a dict (see :func:`manifest_path`)."""
    path = manifest_path(name_or_path)
    with path.open(encoding="utf-8") as handle:
        manifest = json.load(handle)
    for split, spec in manifest.get("splits", {}).items():
        for key in ("file", "git_blob"):
            if key not in spec:
                raise ValueError(f"{path}: split {split!r} has no {key!r}; every split needs 'file' and 'git_blob'")
    return manifest


@dataclass
class FetchResult:
    """What happened to one split: ``status`` is one of present/copied/downloaded/missing/refused/failed."""

    split: str
    file: str
    status: str
    message: str
    required: bool = False
    url: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (PRESENT, COPIED, DOWNLOADED)


def _copy_into_temp(source: BinaryIO, directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def verify_file(path: Path, expected: str) -> str | None:
    """None when ``path``'s git blob id is ``expected``, else a message naming file, expected and found ids."""
    found = file_blob_id(path)
    if found == expected:
        return None
    return f"{path}: git blob id {found}, expected {expected}"


def fetch_split(
    split: str,
    spec: dict[str, Any],
    to_dir: Path,
    from_dir: Path | None = None,
    *,
    force: bool = False,
    timeout: float = 60.0,
) -> FetchResult:
    """Put one verified split file into ``to_dir``: keep a verified copy already there (unless ``force``),
    else copy it from ``from_dir`` or download ``spec["url"]``. The new file is written to a temporary name,
    verified by git blob id and only then renamed into place; a mismatch is refused and nothing is installed."""
    name, expected = spec["file"], spec["git_blob"]
    required = bool(spec.get("required", False))
    target = to_dir / name
    url = spec.get("url")
    if target.is_file() and not force and verify_file(target, expected) is None:
        return FetchResult(split, name, PRESENT, f"{target}: already present, git blob id verified", required)
    to_dir.mkdir(parents=True, exist_ok=True)
    if from_dir is not None:
        source_path = from_dir / name
        if not source_path.is_file():
            where = f"download it from {url}" if url else "it is local-only and has no download URL"
            return FetchResult(split, name, MISSING, f"{source_path}: not found; {where}", required)
        source_label = str(source_path)
        with source_path.open("rb") as source:
            tmp = _copy_into_temp(source, to_dir, name)
        status = COPIED
    elif not url:
        return FetchResult(split, name, MISSING, f"{name}: local-only split with no download URL; copy it with from_dir=DIR", required)
    else:
        source_label = url
        import urllib.error  # stdlib, but slow to import (http, email): only when something is downloaded
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                tmp = _copy_into_temp(response, to_dir, name)
        except (urllib.error.URLError, OSError) as err:
            return FetchResult(split, name, FAILED, f"{url}: download failed ({err}); retry, or copy the file with from_dir=DIR", required)
        status = DOWNLOADED
    found = file_blob_id(tmp)
    if found != expected:
        tmp.unlink(missing_ok=True)
        return FetchResult(
            split, name, REFUSED,
            f"{source_label}: refused {name} ({split}): git blob id {found} does not match the manifest's "
            f"{expected}; not installed. Get the original file" + (f" from {url}" if url else ""),
            required,
        )
    set_default_permissions(tmp)
    os.replace(tmp, target)
    return FetchResult(split, name, status, f"{target}: {status} from {source_label}, git blob id {expected} verified", required)


def fetch_dataset(
    name_or_path: str | os.PathLike,
    to_dir: str | os.PathLike | None = None,
    from_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    timeout: float = 60.0,
) -> list[FetchResult]:
    """:func:`fetch_split` for every split of a manifest; ``to_dir`` defaults to
    ``default_download_dir() / <name>``."""
    manifest = load_manifest(name_or_path)
    target = Path(to_dir) if to_dir is not None else default_download_dir() / manifest["name"]
    source = Path(from_dir) if from_dir is not None else None
    if source is not None and not source.is_dir():
        raise FileNotFoundError(f"from_dir={source}: no such directory")
    return [
        fetch_split(split, spec, target, source, force=force, timeout=timeout)
        for split, spec in manifest["splits"].items()
    ]


def check_dataset(name_or_path: str | os.PathLike, directory: str | os.PathLike) -> list[FetchResult]:
    """Verify the split files already in ``directory`` (status present, missing or refused); writes nothing."""
    manifest = load_manifest(name_or_path)
    results = []
    for split, spec in manifest["splits"].items():
        path = Path(directory) / spec["file"]
        required = bool(spec.get("required", False))
        if not path.is_file():
            results.append(FetchResult(split, spec["file"], MISSING, f"{path}: missing", required, spec.get("url")))
            continue
        mismatch = verify_file(path, spec["git_blob"])
        status, message = (PRESENT, f"{path}: git blob id verified") if mismatch is None else (REFUSED, mismatch)
        results.append(FetchResult(split, spec["file"], status, message, required))
    return results
