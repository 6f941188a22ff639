"""What ``t2m serve`` does, without the web: a model loaded once, requests checked against the limits, one
model call at a time, and the answers as the JSON the page reads (docs/serve.md).

:class:`TranslationService` holds the checkpoint's retrieval translator (its neighbour database and rankers:
fast, loaded at start), the T5 (loaded at start or on first use) and the kNN-MT datastores given, by task.
Every call that searches the database or decodes holds one lock, so concurrent users cannot interleave
decoding state; drawings are made outside it. A request the service cannot answer raises :class:`ApiError`
with an HTTP status and a one-line message naming the fix (the page shows the same words).
"""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from datastore.store import DatastoreError
import t2m
from t2m.chem import is_valid_smiles, molecule_svg
from t2m.decoding.translator import Translator
from t2m.errors import OptionError
from t2m.model.checkpoint import checkpoint_dir, default_model_dir, read_checkpoint_info
from t2m.options import DecodingOptions, RetrievalOptions, open_store
from t2m.tasks import MOL2TEXT, TASKS, TEXT2MOL

log = logging.getLogger(__name__)

RETRIEVAL, MODEL, MODEL_KNN = "retrieval", "model", "model+knn"
SYSTEM_NAMES = {
    RETRIEVAL: "retrieval: the target of the training pair the neighbour ranker puts first (no model)",
    MODEL: "the T5, reading its nearest training pair in its input",
    MODEL_KNN: "the T5 with kNN-MT retrieval from the task's datastore (t2m serve --knn)",
}
# candidates (ranked pairs) a retrieval answer lists: retrieval does not search beams
RETRIEVAL_CANDIDATES = 5
REQUEST_KEYS = ("task", "inputs", "system", "num_beams", "draw")
EXAMPLE = '{"task": "mol2text", "inputs": ["CCO"]}'


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx) and a one-line ``message`` naming the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may ask (each a ``t2m serve`` option of the same name, ``--max-chars`` ...)."""

    max_chars: int = 5000  # characters per input
    max_inputs: int = 100  # inputs per POST /api/translate
    max_upload_bytes: int = 2_000_000  # bytes of an uploaded file
    max_file_rows: int = 2000  # rows of an uploaded file
    max_beams: int = 10  # num_beams
    max_files: int = 2  # uploaded files being translated at once

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value}: must be a whole number, 1 or more")

    def request_bytes(self) -> int:
        """The largest body POST /api/translate reads: every input at its longest (4 bytes a character,
        escaped) and room for the rest."""
        return self.max_inputs * (self.max_chars * 4 + 16) + 4096


@dataclass(frozen=True)
class TranslateRequest:
    """A checked POST /api/translate body."""

    task: str
    inputs: list[str]
    system: str
    num_beams: int = 1
    draw: bool = False


def _count(n: int) -> str:
    return f"{n:,}"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class TranslationService:
    """The loaded model and what the API asks of it (see the module docstring). ``model``: a checkpoint
    folder (None: the shipped model); ``database``: training pairs replacing the checkpoint's memory;
    ``knn``: datastore folders (one per task at most) that add the ``model+knn`` system; ``load_model``:
    load the T5 now rather than on its first use."""

    def __init__(self, model: str | Path | None = None, database: str | Path | None = None,
                 knn: Sequence[str | Path] = (), limits: Limits | None = None, allow_pickle: bool = False,
                 load_model: bool = False):
        self.limits = limits or Limits()
        self.model_dir = checkpoint_dir(model, allow_pickle)
        self.shipped = self.model_dir.resolve() == default_model_dir().resolve()
        self.allow_pickle = allow_pickle
        try:
            self.info = read_checkpoint_info(self.model_dir)
        except ValueError as err:
            raise OptionError(f"model={self.model_dir}: {err}") from None
        self.stores: dict[str, Any] = {}
        for path in knn:
            store = open_store(path, field="knn")
            if store.task in self.stores:
                raise OptionError(f"knn={path}: a second {store.task} datastore; give one store per task")
            self.stores[store.task] = store
        self.retriever = None
        if self.info.extra.get("neighbours"):
            self.retriever = Translator.for_retrieval(self.model_dir, database=database)
            self.retriever.database.prepare(self.tasks)  # the search structures now, not on the first request
        elif database is not None:
            raise OptionError(f"database={database}: the checkpoint {self.model_dir} reads no neighbours; leave "
                              "database=FILE out")
        self._t5 = None
        self._lock = threading.Lock()  # one search or decoding at a time
        self._load_lock = threading.Lock()
        self.started = time.time()
        if load_model:
            self.t5()

    # ---------------------------------------------------------------------------------------- what it offers
    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASKS if t in self.info.tasks)

    def systems(self, task: str) -> list[str]:
        """The systems ``task`` can be translated with: retrieval (with a database), the T5, the T5 + kNN-MT
        (with a store of the task)."""
        found = [RETRIEVAL] if self.retriever is not None else []
        found.append(MODEL)
        if task in self.stores:
            found.append(MODEL_KNN)
        return found

    def default_system(self, task: str) -> str:
        system = self.info.default_system(task)
        return system if system in self.systems(task) else MODEL

    def health(self) -> dict[str, Any]:
        """GET /api/health: the model, its default systems, the limits, the versions."""
        database = self.retriever.database if self.retriever is not None else None

        return {
            "status": "ok",
            "model": {"path": str(self.model_dir), "shipped": self.shipped, "tasks": list(self.tasks),
                      "t5_loaded": self._t5 is not None},
            "database": None if database is None else {"name": database.name or "the checkpoint's memory",
                                                       "pairs": len(database)},
            "tasks": {task: {"default_system": self.default_system(task), "systems": self.systems(task)}
                      for task in self.tasks},
            "systems": {name: SYSTEM_NAMES[name] for name in (RETRIEVAL, MODEL, MODEL_KNN)},
            "knn": {task: str(store.path) for task, store in self.stores.items()},
            "limits": asdict(self.limits),
            "versions": {"t2m": t2m.__version__, "python": platform.python_version(),
                         **{name: _package_version(name) for name in ("torch", "transformers", "rdkit", "starlette",
                                                                      "uvicorn")}},
        }

    # ---------------------------------------------------------------------------------------- checking
    def check_request(self, body: bytes) -> TranslateRequest:
        """The request in ``body`` (JSON), checked; ApiError naming what is wrong and the fix."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, f"the request body is not UTF-8 text; send JSON such as {EXAMPLE}") from None
        except (ValueError, RecursionError) as err:
            where = f" ({err.msg} at line {err.lineno} column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
            raise ApiError(400, f"the request body is not valid JSON{where}; send JSON such as {EXAMPLE}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, f"the request body is a JSON {type(payload).__name__}, not an object; send {EXAMPLE}")
        unknown = sorted(set(payload) - set(REQUEST_KEYS))
        if unknown:
            raise ApiError(400, f"unknown key {unknown[0]!r}; the keys are {', '.join(REQUEST_KEYS)}")
        request = self.check_options(payload.get("task"), payload.get("system"), payload.get("num_beams"))
        inputs = self.check_inputs(payload.get("inputs"), request.task)
        draw = payload.get("draw", False)
        if not isinstance(draw, bool):
            raise ApiError(400, f"draw {json.dumps(draw)[:40]}: give true or false")
        return TranslateRequest(request.task, inputs, request.system, request.num_beams, draw)

    def check_options(self, task: Any, system: Any = None, beams: Any = None) -> TranslateRequest:
        """The task, system (None: the checkpoint's default for the task) and beams (None: 1) of a request,
        checked (its inputs left empty)."""
        if task not in self.tasks:
            shown = "missing" if task is None else f"{task!r}" if isinstance(task, str) else f"a JSON {type(task).__name__}"
            raise ApiError(400, f"task {shown}: give \"task\": one of {', '.join(map(repr, self.tasks))}")
        if system is None:
            system = self.default_system(task)
        elif system not in self.systems(task):
            fix = (f"start t2m serve with --knn STORE (a {task} datastore) for it; " if system == MODEL_KNN
                   else "")
            raise ApiError(400, f"system {json.dumps(system)[:40]} is not available for {task}: {fix}choose one of "
                                f"{', '.join(self.systems(task))}")
        beams = 1 if beams is None else beams
        if not isinstance(beams, int) or isinstance(beams, bool) or not 1 <= beams <= self.limits.max_beams:
            raise ApiError(400, f"num_beams {json.dumps(beams)[:40]}: give a whole number from 1 (greedy search) to "
                                f"{self.limits.max_beams} (the limit, t2m serve --max-beams)")
        return TranslateRequest(task, [], system, beams)

    def check_inputs(self, inputs: Any, task: str) -> list[str]:
        """The request's ``inputs``: a non-empty list of strings within the limits, each SMILES of a mol2text
        request one RDKit reads."""
        what = "a description" if task == TEXT2MOL else "a SMILES"
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            shown = "missing" if inputs is None else f"a JSON {type(inputs).__name__}" if not isinstance(inputs, list) \
                else "a list with a non-string in it"
            raise ApiError(400, f"inputs {shown}: give \"inputs\" as a list of strings, e.g. {EXAMPLE}")
        if not inputs:
            raise ApiError(400, f"inputs is an empty list: give at least one input ({what})")
        limits = self.limits
        if len(inputs) > limits.max_inputs:
            raise ApiError(413, f"{_count(len(inputs))} inputs in one request; the limit is {_count(limits.max_inputs)} "
                                "(t2m serve --max-inputs): send them in parts, or upload them as a file")
        for number, text in enumerate(inputs, start=1):
            where = "the input" if len(inputs) == 1 else f"input {number}"
            if not text.strip():
                raise ApiError(400, f"{where} is empty: type {what}")
            if len(text) > limits.max_chars:
                raise ApiError(413, f"{where} has {_count(len(text))} characters; the limit is "
                                    f"{_count(limits.max_chars)} (t2m serve --max-chars): shorten it")
            if task == MOL2TEXT and not is_valid_smiles(text.strip()):
                shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
                raise ApiError(422, f"{where} {shown!r} is not a SMILES RDKit can read: check its brackets, ring "
                                    "closures and valences")
        return [text.strip() for text in inputs]

    # ---------------------------------------------------------------------------------------- translating
    def t5(self):
        """The T5 translator, loaded on first use (once, whatever the number of callers waiting)."""
        with self._load_lock:
            if self._t5 is None:
                log.info("loading the T5 of %s", self.model_dir)
                database = self.retriever.database if self.retriever is not None else None
                t5 = Translator.from_pretrained(self.model_dir, allow_pickle=self.allow_pickle, database=database)
                self._check_stores(t5)
                self._t5 = t5
        return self._t5

    def _check_stores(self, t5) -> None:
        """Refuse a ``knn`` store built for another model (at start; with the T5 loaded lazily, on its load)."""
        for store in self.stores.values():
            try:
                store.check_matches(model=t5.model, tokenizer=t5.tokenizer)
            except DatastoreError as err:
                raise OptionError(f"knn={err}") from None

    def run(self, task: str, texts: list[str], system: str, num_beams: int = 1, n_best: bool = True) -> list:
        """:class:`t2m.decoding.translator.Translation` of each text by ``system``, one call at a time. ``n_best``: list
        every beam (retrieval: the :data:`RETRIEVAL_CANDIDATES` best-ranked pairs) as candidates; else the
        candidates ``t2m translate`` gives with the same options (an uploaded file is written as it writes it)."""
        if system == RETRIEVAL:
            with self._lock:
                return self.retriever.retrieve(texts, task, RETRIEVAL_CANDIDATES if n_best else 1)

        translator = self.t5()
        decoding = DecodingOptions(num_beams=num_beams, num_return_sequences=num_beams if n_best else None)
        retrieval = RetrievalOptions(self.stores[task]) if system == MODEL_KNN else None
        with self._lock:
            return translator.translate(texts, task, decoding, retrieval=retrieval)

    def answer(self, request: TranslateRequest) -> dict[str, Any]:
        """POST /api/translate's answer to a checked request."""
        started = time.perf_counter()
        results = self.run(request.task, request.inputs, request.system, request.num_beams)
        outputs = [output_json(r, request.task, request.draw) for r in results]
        return {"task": request.task, "system": request.system, "num_beams": request.num_beams, "outputs": outputs,
                "seconds": round(time.perf_counter() - started, 4)}


# ------------------------------------------------------------------------------------------ answers


def draw(smiles: str) -> str | None:
    """RDKit's 2-D drawing of ``smiles`` as SVG text (the bench report's), None when it is no molecule."""
    return molecule_svg(smiles, 260, 190, bond_length=30) if smiles else None


def output_json(result, task: str, drawings: bool = False) -> dict[str, Any]:
    """One output of POST /api/translate: ``input``, ``output``, ``candidates``, ``flags``, ``neighbours``
    (``similarity``, ``source``, ``target``) and ``valid`` (text2mol: the output is a SMILES RDKit reads;
    mol2text: the input is); with ``drawings``, SVG text under ``drawing`` (the output molecule, or the
    input's for mol2text), ``candidate_drawings`` (text2mol) and each neighbour's ``drawing``."""
    neighbours = [{"similarity": n.similarity, "source": n.source, "target": n.target} for n in result.neighbours]
    molecule = result.output if task == TEXT2MOL else result.input
    out = {"input": result.input, "output": result.output, "candidates": list(result.candidates or [result.output]),
           "flags": list(result.flags), "neighbours": neighbours, "valid": is_valid_smiles(molecule)}
    if drawings:
        out["drawing"] = draw(molecule)
        if task == TEXT2MOL:
            out["candidate_drawings"] = [draw(c) for c in out["candidates"]]
        for n in neighbours:
            n["drawing"] = draw(n["source"] if task == MOL2TEXT else n["target"])
    return out
