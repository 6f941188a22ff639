"""Text–molecule pair files → records and ``datasets.Dataset``s; the ChEBI-20 splits.

Two readers, one record shape ``{"cid": str, "smiles": str, "description": str}``:

- TSV in ChEBI-20's format: a header line naming the columns (``CID``, ``SMILES``, ``description``), tab
  separated, **no quoting** (descriptions hold quotes and commas verbatim), and ``\\\\`` in the SMILES
  column meaning one ``\\`` (ChEBI-20 escapes the cis/trans bond marks). Only that one escape is undone.
- JSONL: one JSON object per line; its keys name the columns. JSON has its own escaping, so SMILES are
  taken as they are.

Column names are configurable (:class:`ColumnNames`); they match exactly, else case-insensitively.

A bad row — wrong number of fields, invalid JSON, a missing or empty SMILES/description, a CID seen
before — is reported by a :class:`DataWarning` naming the file, the line and the fix, and skipped; the
rest of the file is kept. ``strict=True`` raises :class:`DataFormatError` on the first bad row instead.

ChEBI-20 settings (:func:`load_chebi20`, :func:`load_chebi20_records`):

- ``"official"`` (the default wherever ``train.txt`` is present): train = ``train.txt`` (26,407 pairs,
  MolT5's file), dev = the dev slice of ``validation.txt``, test = ``test.txt`` — what MolT5 and every
  published ChEBI-20 result trained and reported on. The dev slice is the :data:`DEV_SIZE` (300) rows
  whose CIDs have the smallest ``sha256(CID as written in the file, ASCII)`` hex digests — no random
  generator, so it is the same on every machine and version; it keeps the file's row order.
- ``"benchmark"`` (a small setting for tests, and the fallback where ``train.txt`` is missing): train =
  ``validation.txt`` minus the dev slice, plus the real train-split rows of ``train_recovered.txt`` when
  that file is present (4,791 pairs with the shared data), dev and test as above. Its numbers are not
  comparable with published ones.
- ``"benchmark-validation"``: as ``"benchmark"`` without ``train_recovered.txt`` (3,001 training pairs).
- ``"auto"`` (default): ``"official"`` when ``train.txt`` is present in the data directory, else
  ``"benchmark"``. The chosen setting is always named in what is returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from t2m.download import default_download_dir
from t2m.io import atomic_write_text, file_sha256
from t2m.tasks import TEXT2MOL, check_task

if TYPE_CHECKING:  # datasets is imported lazily: plain-record users do not pay for it
    import datasets

COLUMNS = ("cid", "smiles", "description")
DEV_SIZE = 300
BENCHMARK = "benchmark"
BENCHMARK_VALIDATION = "benchmark-validation"
OFFICIAL = "official"
SETTINGS = ("auto", BENCHMARK, BENCHMARK_VALIDATION, OFFICIAL)
CHEBI20_FILES = {"train": "train.txt", "validation": "validation.txt", "test": "test.txt"}
CHEBI20_RECOVERED_FILE = "train_recovered.txt"  # real rows of the official train split (see shared/data)
CHEBI20_UNLABELED_FILE = "train_smiles_unlabeled.tsv"
# After this many bad rows in one file, the rest are counted and reported in one summary warning.
MAX_ROW_WARNINGS = 20

Record = dict[str, str]


class DataFormatError(ValueError):
    """A data file that cannot be read as pairs (or a bad row under ``strict=True``)."""


class DataWarning(UserWarning):
    """A bad row that was skipped; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class ColumnNames:
    """Where each field lives in a user's file: TSV header names or JSONL keys.

    ``cid=None``: the file has no identifier column; the line number becomes the CID.
    ``description=None``: a SMILES-only file (e.g. unlabeled molecules); records then have no
    ``description``.
    """

    cid: str | None = "CID"
    smiles: str = "SMILES"
    description: str | None = "description"

    def wanted(self) -> dict[str, str]:
        """Record field -> column name, for the columns this file must have."""
        names = {"cid": self.cid, "smiles": self.smiles, "description": self.description}
        return {key: name for key, name in names.items() if name is not None}


CHEBI20_COLUMNS = ColumnNames()
JSONL_COLUMNS = ColumnNames(cid="cid", smiles="smiles", description="description")


def unescape_smiles(text: str) -> str:
    """Undo ChEBI-20's one escape: ``\\\\`` in the file is one ``\\`` in the SMILES."""
    return text.replace("\\\\", "\\")


def escape_smiles(smiles: str) -> str:
    """Inverse of :func:`unescape_smiles`, for writing ChEBI-20-style TSV."""
    return smiles.replace("\\", "\\\\")


class _BadRows:
    """Reports bad rows of one file: warn (first :data:`MAX_ROW_WARNINGS`, then a summary) or raise."""

    def __init__(self, path: Path, strict: bool):
        self.path = path
        self.strict = strict
        self.count = 0

    def report(self, line: int, problem: str, fix: str) -> None:
        message = f"{self.path}:{line}: {problem}; {fix}"
        if self.strict:
            raise DataFormatError(message)
        self.count += 1
        if self.count <= MAX_ROW_WARNINGS:
            warnings.warn(f"{message} (row skipped)", DataWarning, stacklevel=4)

    def finish(self, kept: int) -> None:
        if self.count > MAX_ROW_WARNINGS:
            warnings.warn(
                f"{self.path}: {self.count} bad rows skipped in all ({self.count - MAX_ROW_WARNINGS} not shown "
                f"one by one), {kept} rows kept; read with strict=True to stop at the first",
                DataWarning,
                stacklevel=3,
            )


def _match_columns(available: Sequence[str], wanted: Mapping[str, str]) -> dict[str, str | None]:
    """Record field -> the available column it reads from (exact name, else unique case-insensitive)."""
    found: dict[str, str | None] = {}
    for key, name in wanted.items():
        if name in available:
            found[key] = name
            continue
        folded = [a for a in available if a.casefold() == name.casefold()]
        found[key] = folded[0] if len(folded) == 1 else None
    return found


COMPRESSED = {".gz": "gzip", ".xz": "lzma", ".bz2": "bz2"}  # file suffix -> the standard-library module that reads it


def read_file_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when its name ends in ``.gz``, ``.xz`` or ``.bz2``."""
    module = COMPRESSED.get(path.suffix.lower())
    if module is None:
        return path.read_bytes()
    import importlib

    reader = importlib.import_module(module)
    try:
        return reader.decompress(path.read_bytes())
    except (OSError, EOFError, ValueError, getattr(reader, "LZMAError", OSError)) as err:  # BadGzipFile is an OSError
        raise DataFormatError(f"{path}: not a readable {path.suffix} file ({err}); compress it again or pass it "
                              "uncompressed") from None


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """(1-based line number, text without its line ending); splits on ``\\n`` only, never inside a field.
    A ``.gz`` / ``.xz`` / ``.bz2`` file is decompressed first."""
    data = read_file_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    for number, line in enumerate(parts, start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def _check_and_add(
    record: Record, line: int, records: list[Record], seen: dict[str, int], bad: _BadRows, columns: ColumnNames
) -> None:
    for key in ("smiles", "description"):
        if key in record and not record[key].strip():
            bad.report(line, f"empty {key} (column {getattr(columns, key)!r})", "fill it in or delete the row")
            return
    if columns.cid is not None:
        cid = record["cid"].strip()
        if not cid:
            bad.report(line, f"empty CID (column {columns.cid!r})", "give the row a unique identifier")
            return
        if cid in seen:
            bad.report(line, f"duplicate CID {cid!r} (first on line {seen[cid]})",
                       "remove the repeated row or give it a unique CID; the first one is kept")
            return
        record["cid"] = cid
        seen[cid] = line
    records.append(record)


def read_tsv_records(
    path: str | os.PathLike,
    columns: ColumnNames = CHEBI20_COLUMNS,
    *,
    strict: bool = False,
    unescape: bool = True,
) -> list[Record]:
    """Rows of a ChEBI-20-style TSV as ``{"cid", "smiles", "description"}`` dicts, in file order.

    ``unescape=True`` turns ``\\\\`` into ``\\`` in the SMILES column (ChEBI-20's convention). Bad rows are
    warned about and skipped (see the module docstring); raises :class:`DataFormatError` when the file
    is empty or its header lacks a needed column, and on any bad row when ``strict``.
    """
    path = Path(path)
    bad = _BadRows(path, strict)
    lines = iter(_lines(path))
    header_line = next(lines, None)
    if header_line is None:
        raise DataFormatError(f"{path}:1: empty file; expected a header line naming the columns")
    header = header_line[1].split("\t")
    wanted = columns.wanted()
    found = _match_columns(header, wanted)
    missing = [wanted[key] for key, column in found.items() if column is None]
    if missing:
        raise DataFormatError(
            f"{path}:1: header {header!r} has no column {', '.join(map(repr, missing))}; name the columns "
            "in a tab-separated header line (CID, SMILES, description; in Python, ColumnNames(...) names others)"
        )
    index = {key: header.index(column) for key, column in found.items()}
    records: list[Record] = []
    seen: dict[str, int] = {}
    for number, line in lines:
        if not line.strip():
            continue  # blank lines (e.g. a second newline at the end) are not rows
        fields = line.split("\t")
        if len(fields) != len(header):
            bad.report(
                number,
                f"{len(fields)} tab-separated fields, expected {len(header)} ({', '.join(header)})",
                "a field must not contain a tab or a line break; join or split the fields to match the header",
            )
            continue
        record = {key: fields[i] for key, i in index.items()}
        if columns.cid is None:
            record["cid"] = str(number)
        if unescape:
            record["smiles"] = unescape_smiles(record["smiles"])
        _check_and_add(record, number, records, seen, bad, columns)
    bad.finish(len(records))
    return records


def read_jsonl_records(
    path: str | os.PathLike, columns: ColumnNames = JSONL_COLUMNS, *, strict: bool = False
) -> list[Record]:
    """Objects of a JSONL file as ``{"cid", "smiles", "description"}`` dicts, in file order.

    Values other than strings (e.g. integer CIDs) are converted with ``str``. Bad rows are warned about
    and skipped; raises :class:`DataFormatError` on any bad row when ``strict``.
    """
    path = Path(path)
    bad = _BadRows(path, strict)
    wanted = columns.wanted()
    records: list[Record] = []
    seen: dict[str, int] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            bad.report(number, f"invalid JSON ({err.msg} at column {err.colno})", "write one JSON object per line")
            continue
        except (ValueError, RecursionError) as err:  # an integer too long to convert, nesting too deep
            bad.report(number, f"invalid JSON ({type(err).__name__})", "write one JSON object per line")
            continue
        if not isinstance(obj, dict):
            bad.report(number, f"a JSON {type(obj).__name__}, not an object", "write one JSON object per line")
            continue
        found = _match_columns(list(obj), wanted)
        missing = [wanted[key] for key, key_found in found.items() if key_found is None or obj[key_found] is None]
        if missing:
            bad.report(number, f"no key {', '.join(map(repr, missing))} (keys: {', '.join(obj)})",
                       "add the key (any case: smiles, description, cid; in Python, ColumnNames(...) names others)")
            continue
        record = {key: str(obj[key_found]) for key, key_found in found.items()}
        if columns.cid is None:
            record["cid"] = str(number)
        _check_and_add(record, number, records, seen, bad, columns)
    bad.finish(len(records))
    return records


def _file_format(path: Path, format: str | None) -> str:
    if format is None:
        if path.suffix.lower() in COMPRESSED:
            path = path.with_suffix("")
        format = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "tsv"
    if format not in ("tsv", "jsonl"):
        raise ValueError(f"unknown format {format!r}: choose 'tsv' or 'jsonl'")
    return format


def read_records(
    path: str | os.PathLike,
    columns: ColumnNames | None = None,
    *,
    format: str | None = None,
    strict: bool = False,
) -> list[Record]:
    """Pairs of a TSV or JSONL file (``format`` from the suffix: ``.jsonl``/``.ndjson`` → JSONL, else TSV;
    ``.gz`` / ``.xz`` / ``.bz2`` after it: compressed, read as the file inside).

    ``columns`` defaults to ChEBI-20's header for TSV and lower-case keys for JSONL.
    """
    path = Path(path)
    if _file_format(path, format) == "jsonl":
        return read_jsonl_records(path, columns or JSONL_COLUMNS, strict=strict)
    return read_tsv_records(path, columns or CHEBI20_COLUMNS, strict=strict)


def records_to_dataset(records: Sequence[Mapping[str, str]], columns: Sequence[str] = COLUMNS) -> "datasets.Dataset":
    """A ``datasets.Dataset`` of string columns ``columns`` (empty records give an empty dataset)."""
    from datasets import Dataset, Features, Value

    features = Features({name: Value("string") for name in columns})
    return Dataset.from_dict({name: [r[name] for r in records] for name in columns}, features=features)


def read_pairs(
    path: str | os.PathLike,
    columns: ColumnNames | None = None,
    *,
    format: str | None = None,
    strict: bool = False,
) -> "datasets.Dataset":
    """:func:`read_records` as a ``datasets.Dataset`` with columns ``cid``, ``smiles``, ``description``
    (only ``cid``, ``smiles`` when ``columns.description`` is None)."""
    records = read_records(path, columns, format=format, strict=strict)
    names = COLUMNS if columns is None or columns.description is not None else ("cid", "smiles")
    return records_to_dataset(records, names)


# --------------------------------------------------------------------------------------------------
# ChEBI-20


def chebi20_dir_candidates() -> list[Path]:
    """Where ChEBI-20 is looked for, in order: ``$T2M_SHARED_DATA/chebi20``, ``../shared/data/chebi20`` from
    the working directory, and where ``t2m data download chebi20`` puts it (``$T2M_DATA_DIR/chebi20``, else
    ``data/downloads/chebi20`` under the working directory)."""
    candidates = []
    if os.environ.get("T2M_SHARED_DATA"):
        candidates.append(Path(os.environ["T2M_SHARED_DATA"]) / "chebi20")
    candidates += [Path.cwd().parent / "shared" / "data" / "chebi20", default_download_dir() / "chebi20"]
    return candidates


def _has_chebi20(directory: Path) -> bool:
    return all((directory / CHEBI20_FILES[s]).is_file() for s in ("validation", "test"))


def resolve_chebi20_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The ChEBI-20 directory: ``data_dir`` if given (the folder holding ``validation.txt`` and ``test.txt``,
    or one holding such a ``chebi20/`` folder, as ``../shared/data`` does), else the first of
    :func:`chebi20_dir_candidates` holding them. Raises ``FileNotFoundError`` saying where it looked."""
    if data_dir is not None:
        directory = Path(data_dir)
        if not _has_chebi20(directory) and _has_chebi20(directory / "chebi20"):
            directory = directory / "chebi20"
        if not _has_chebi20(directory):
            raise FileNotFoundError(
                f"{directory}: no ChEBI-20 validation.txt and test.txt here; run "
                f"`t2m data download chebi20 --to {directory}` or point to the folder that holds them"
            )
        return directory
    candidates = chebi20_dir_candidates()
    for directory in candidates:
        if _has_chebi20(directory):
            return directory
    raise FileNotFoundError(
        "ChEBI-20 not found in " + ", ".join(map(str, candidates))
        + "; run `t2m data download chebi20`, set T2M_SHARED_DATA to the folder holding chebi20/, or pass the directory"
    )


def cid_rank_key(cid: str) -> str:
    """The dev-slice order: rows whose ``sha256(cid)`` hex digest sorts first go to dev."""
    return hashlib.sha256(cid.encode("utf-8")).hexdigest()


def dev_slice_cids(cids: Iterable[str], size: int = DEV_SIZE) -> set[str]:
    """The ``size`` CIDs with the smallest :func:`cid_rank_key` — the benchmark setting's dev slice."""
    return set(sorted(cids, key=cid_rank_key)[:size])


def split_off_dev(records: Sequence[Record], size: int = DEV_SIZE) -> tuple[list[Record], list[Record]]:
    """(train, dev) of ``records``: dev = the :func:`dev_slice_cids` rows; both keep the input order."""
    if not 0 < size < len(records):
        raise ValueError(f"dev size {size} must be between 1 and {len(records) - 1} (the file has {len(records)} rows)")
    dev_cids = dev_slice_cids((r["cid"] for r in records), size)
    return [r for r in records if r["cid"] not in dev_cids], [r for r in records if r["cid"] in dev_cids]


@dataclass
class Chebi20Splits:
    """The three splits of one ChEBI-20 setting as lists of records, and where they came from."""

    setting: str
    data_dir: Path
    train: list[Record]
    dev: list[Record]
    test: list[Record]
    sources: dict[str, str] = field(default_factory=dict)  # split -> how it was made, for printing
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of every file read

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    def describe(self) -> dict:
        """Setting, split sizes, how each split was made and the sha256 of every file read: what a result
        names so that it can be reproduced."""
        return {"setting": self.setting, "sizes": self.sizes(), "sources": dict(self.sources), "files": dict(self.files)}

    def to_dataset_dict(self) -> "datasets.DatasetDict":
        """A ``DatasetDict(train, dev, test)`` with ``.setting``, ``.data_dir`` and ``.sources``
        attributes; each split's ``info.description`` also names the setting."""
        from datasets import DatasetDict

        result = DatasetDict()
        for split in ("train", "dev", "test"):
            dataset = records_to_dataset(getattr(self, split))
            dataset.info.description = f"ChEBI-20 {self.setting} setting, {split}: {self.sources.get(split, '')}"
            result[split] = dataset
        result.setting = self.setting
        result.data_dir = self.data_dir
        result.sources = dict(self.sources)
        return result


def resolve_setting(directory: Path, setting: str = "auto") -> str:
    """``"official"`` or ``"benchmark"``; ``"auto"`` picks official when ``train.txt`` is in ``directory``."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown ChEBI-20 setting {setting!r}: choose one of {', '.join(SETTINGS)}")
    has_train = (directory / CHEBI20_FILES["train"]).is_file()
    if setting == "auto":
        return OFFICIAL if has_train else BENCHMARK
    if setting == OFFICIAL and not has_train:
        raise FileNotFoundError(
            f"{directory / CHEBI20_FILES['train']}: missing, needed by the official setting; run "
            "`t2m data download chebi20` on a machine with internet, or use the benchmark setting"
        )
    return setting


def load_chebi20_records(
    data_dir: str | os.PathLike | None = None,
    setting: str = "auto",
    *,
    dev_size: int = DEV_SIZE,
    strict: bool = False,
) -> Chebi20Splits:
    """ChEBI-20 train/dev/test as records under ``setting`` (see the module docstring).

    ``data_dir`` is resolved by :func:`resolve_chebi20_dir`. Raises ``FileNotFoundError`` when the
    files are not there.
    """
    directory = resolve_chebi20_dir(data_dir)
    setting = resolve_setting(directory, setting)
    files: dict[str, str] = {}

    def read(name: str) -> list[Record]:
        path = directory / name
        files[name] = file_sha256(path)
        return read_tsv_records(path, strict=strict)

    validation, test = read(CHEBI20_FILES["validation"]), read(CHEBI20_FILES["test"])
    if not 0 < dev_size < len(validation):
        raise ValueError(f"{directory / CHEBI20_FILES['validation']}: {len(validation)} rows, so a dev slice of "
                         f"{dev_size} leaves no training rows; pass a dev size between 1 and {len(validation) - 1}")
    rest, dev = split_off_dev(validation, dev_size)
    sources = {"dev": f"the {dev_size} validation.txt rows with the smallest sha256(CID)", "test": "test.txt"}
    if setting == OFFICIAL:
        train = read(CHEBI20_FILES["train"])
        sources["train"] = "train.txt"
    else:
        train = rest
        sources["train"] = "validation.txt minus the dev slice"
        if setting == BENCHMARK and (directory / CHEBI20_RECOVERED_FILE).is_file():
            seen = {r["cid"] for r in validation} | {r["cid"] for r in test}
            recovered = [r for r in read(CHEBI20_RECOVERED_FILE) if r["cid"] not in seen]
            train = train + recovered
            sources["train"] += f" + {len(recovered)} rows of {CHEBI20_RECOVERED_FILE}"
    sources = {split: sources[split] for split in ("train", "dev", "test")}
    return Chebi20Splits(setting, directory, train, dev, test, sources, files)


def load_chebi20(
    data_dir: str | os.PathLike | None = None,
    setting: str = "auto",
    *,
    dev_size: int = DEV_SIZE,
    strict: bool = False,
) -> "datasets.DatasetDict":
    """:func:`load_chebi20_records` as a ``DatasetDict(train, dev, test)``; ``.setting`` names the setting."""
    return load_chebi20_records(data_dir, setting, dev_size=dev_size, strict=strict).to_dataset_dict()


def load_chebi20_unlabeled_records(data_dir: str | os.PathLike | None = None, *, strict: bool = False) -> list[Record]:
    """The local-only ``train_smiles_unlabeled.tsv`` (CID, SMILES; no descriptions) as records.
    Raises ``FileNotFoundError`` when the file is absent (it cannot be downloaded)."""
    path = resolve_chebi20_dir(data_dir) / CHEBI20_UNLABELED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; this split is local-only (no download URL)")
    return read_tsv_records(path, ColumnNames(description=None), strict=strict)


def training_records(data: str | os.PathLike | None, setting: str = "auto", dev_size: int | None = None
                     ) -> tuple[list[dict], dict[str, Any]]:
    """The training pairs a datastore is built from (and a pair-restricted search reads again) and a JSON
    description of where they came from, each file with its sha256.

    ``data``: a ChEBI-20 folder (or a folder holding ``chebi20/``) -> its training split under
    ``setting`` (benchmark: validation.txt minus the dev slice); a ``.tsv`` / ``.jsonl`` file -> all of
    its rows; None -> ChEBI-20 where t2m finds it.
    """
    path = Path(data) if data is not None else None
    if path is not None and path.is_file():
        records = read_records(path)
        return records, {"dataset": "pairs file", "split": "all",
                         "files": [{"path": str(path.resolve()), "sha256": file_sha256(path)}]}
    dev_size = DEV_SIZE if dev_size is None else dev_size
    splits = load_chebi20_records(path, setting, dev_size=dev_size)
    used = [CHEBI20_FILES["train"]] if splits.setting == "official" else [n for n in splits.files if n != CHEBI20_FILES["test"]]
    files = [{"path": str((splits.data_dir / name).resolve()), "sha256": splits.files[name]} for name in used]
    return splits.train, {"dataset": "chebi20", "setting": splits.setting, "split": "train",
                          "split_source": splits.sources.get("train", ""), "dev_size": dev_size,
                          "files": files}


# --------------------------------------------------------------------------------------------------
# Writing


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_records_tsv(path: str | os.PathLike, records: Sequence[Mapping[str, str]]) -> None:
    """Write records as ChEBI-20 TSV (header ``CID SMILES description``, SMILES backslashes escaped).
    Tabs and line breaks inside fields become spaces so every row stays one row."""
    lines = ["CID\tSMILES\tdescription"]
    lines += [
        "\t".join((_one_line(r["cid"]), escape_smiles(_one_line(r["smiles"])), _one_line(r["description"])))
        for r in records
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_predictions(
    path: str | os.PathLike, task: str, sources: Sequence[str], references: Sequence[str], outputs: Sequence[str]
) -> None:
    """Write MolT5's 3-column predictions TSV: header ``description`` (text2mol) or ``SMILES``
    (mol2text), then ``ground truth``, ``output``. SMILES are written unescaped, as in MolT5's files;
    tabs and line breaks inside fields become spaces. Raises ``ValueError`` on unequal lengths."""
    check_task(task)
    if not len(sources) == len(references) == len(outputs):
        raise ValueError(
            f"{path}: {len(sources)} sources, {len(references)} references and {len(outputs)} outputs; "
            "they must have one entry per row"
        )
    header = "description" if task == TEXT2MOL else "SMILES"
    lines = [f"{header}\tground truth\toutput"]
    lines += ["\t".join(map(_one_line, row)) for row in zip(sources, references, outputs)]
    atomic_write_text(path, "\n".join(lines) + "\n")
