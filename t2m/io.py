"""Writing files so that a reader never sees half of one: t2m's one atomic-write helper; the one check
that a file or folder can be written before any work starts (:func:`check_writable_file`); and t2m's one
file-hash helper (:func:`file_sha256`).

Every file t2m writes (predictions, reports, bench results, model cards, datastore manifests it owns)
goes through :func:`atomic_write`: the bytes go to a temporary file in the target's folder, are flushed
to disk, get the mode a plain ``open`` would give, and replace the target with ``os.replace``. An
interrupted write leaves the old file (or none), never a truncated one.

The two libraries below t2m cannot import it (``datastore`` and ``evaluation`` do not import ``t2m``),
so each keeps its own single helper: ``datastore.store`` (the store's JSON and arrays) and
``evaluation.cache.atomic_write_bytes`` (cache files). Neither hashes files t2m names (a store's training
files, a checkpoint's config): t2m does, with :func:`file_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from t2m.errors import OptionError


def set_default_permissions(path: str | os.PathLike) -> None:
    """Give a ``tempfile.mkstemp`` file (private, 0600) the mode a normal ``open`` would: 0666 minus umask."""
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it and put it back
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, data: bytes | str, *, fsync: bool = True) -> Path:
    """Write ``data`` (bytes, or text written as UTF-8 with ``\\n`` line ends) to ``path`` atomically;
    creates the parent folder; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, text)


def write_json_atomic(path: str | os.PathLike, data: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """``data`` as indented UTF-8 JSON (non-ASCII kept) with a final newline, written atomically."""
    return atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False, default=default) + "\n")


def file_sha256(path: str | os.PathLike, *, default: str | None = None, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks. A file that cannot be read raises ``OSError``
    (``FileNotFoundError``, ...), or gives ``default`` when one is given (e.g. ``""`` where a missing file
    is part of what a signature records)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
    except OSError:
        if default is None:
            raise
        return default
    return digest.hexdigest()


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written into (a file in its way, the nearest existing folder not
    writable), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder; give another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable; give a folder you may write to"
    return None


def check_writable_folder(path: str | os.PathLike, field: str) -> None:
    """Refuse (:class:`t2m.errors.OptionError` naming option ``field``) a folder that would be created or
    written into but cannot be: a file is in its place (or in a parent's), or the nearest existing folder
    is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{field}={path}: a file, not a folder; give a folder path (it is created)")
    problem = _unwritable(path)
    if problem:
        raise OptionError(f"{field}={path}: {problem}")


def check_writable_file(path: str | os.PathLike | None, field: str) -> None:
    """Refuse (:class:`t2m.errors.OptionError` naming option ``field``) a file that would be written but
    cannot be: a folder in its place, or a parent that is a file or not writable (None: no file)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{field}={path}: a folder; give a file path")
    problem = _unwritable(path.parent if str(path.parent) else Path("."))
    if problem:
        raise OptionError(f"{field}={path}: {problem}")
