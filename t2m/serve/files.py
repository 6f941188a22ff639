"""Uploaded files translated in the background, with progress, and written as ``t2m translate`` writes them.

A file is read as ``t2m translate --input`` reads one (:func:`t2m.inputs.parse_inputs`: text, ChEBI-20/MolT5
TSV or JSONL, told apart or refused with the fix) and translated a chunk of rows at a time, each chunk one
model call of :meth:`t2m.serve.service.TranslationService.run` (so a file does not hold the model while
people use the page). Rows that cannot be read, and rows over the character limit, are flagged in place, as
``t2m translate`` flags unreadable rows; the finished file is :func:`t2m.translate_job.format_output`'s, with
the candidates ``t2m translate`` gives: the file ``t2m translate --task T --system S --num-beams N --input FILE``
writes (the MolT5 3-column TSV for a TSV, JSONL with each row's neighbours for JSONL, one output a line for text).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from t2m.decoding.translator import Translation
from t2m.errors import OptionError, error_line
from t2m.inputs import FORMATS, parse_inputs
from t2m.serve.service import ApiError, TranslationService, _count
from t2m.translate_job import format_output, known_results

log = logging.getLogger(__name__)

CHUNK_ROWS = 16  # rows of a file translated per model call
KEPT_FILES = 20  # finished files kept for download; the oldest go first
SUFFIX = {"tsv": ".tsv", "jsonl": ".jsonl", "text": ".txt"}
MEDIA_TYPE = {"tsv": "text/tab-separated-values", "jsonl": "application/x-ndjson", "text": "text/plain"}


@dataclass
class FileJob:
    """One uploaded file: its rows, how many are done, its state (``running``, ``done``, ``failed``)."""

    id: str
    name: str
    task: str
    system: str
    num_beams: int
    inputs: Any  # t2m.inputs.Inputs
    results: list = field(default_factory=list)
    done: int = 0
    state: str = "running"
    error: str | None = None
    text: str | None = None
    started: float = field(default_factory=time.time)
    seconds: float | None = None

    @property
    def rows(self) -> int:
        return len(self.inputs.rows)

    def download_name(self) -> str:
        stem = PurePath(self.name).stem or "input"
        return f"{stem}.{self.task}{SUFFIX[self.inputs.kind]}"

    def status(self) -> dict[str, Any]:
        """GET /api/files/ID: progress, and where the output is once done."""
        out = {"id": self.id, "name": self.name, "task": self.task, "system": self.system, "num_beams": self.num_beams,
               "format": self.inputs.kind, "rows": self.rows, "done": self.done, "state": self.state,
               "error": self.error, "seconds": self.seconds}
        if self.state == "done":
            out["flagged"] = sum(1 for r in self.results if r.flags)
            out["download"] = f"/api/files/{self.id}/output"
            out["download_name"] = self.download_name()
        return out


class FileJobs:
    """The uploaded files of one server: started, looked up, translated in worker threads."""

    def __init__(self, service: TranslationService):
        self.service = service
        self._jobs: dict[str, FileJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, data: bytes, name: str, task: str, system: str | None, num_beams: int, format: str) -> FileJob:
        """Read ``data`` (the file ``name``) and start translating it; ApiError when it cannot be read, is
        over the limits, or too many files are being translated."""
        limits = self.service.limits
        request = self.service.check_options(task, system, num_beams)
        if format not in FORMATS:
            raise ApiError(400, f"format {format!r}: choose one of {', '.join(FORMATS)}")
        name = PurePath(name.replace("\\", "/")).name or "upload.txt"
        if not data:
            raise ApiError(400, f"the file {name} is empty: choose a file with one input a line (text, TSV or JSONL)")
        try:
            inputs = parse_inputs(data, request.task, format, name, label=f"the file {name}")
        except OptionError as err:
            raise ApiError(400, str(err)) from None
        if not inputs.rows:
            raise ApiError(400, f"the file {name} has no rows to translate")
        if len(inputs.rows) > limits.max_file_rows:
            raise ApiError(413, f"the file {name} has {_count(len(inputs.rows))} rows; the limit is "
                                f"{_count(limits.max_file_rows)} (t2m serve --max-file-rows): split it")
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.state == "running")
            if running >= limits.max_files:
                raise ApiError(429, f"{running} files are being translated, the most at once (t2m serve --max-files); "
                                    "try again when one is done")
            job = FileJob(str(next(self._ids)), name, request.task, request.system, request.num_beams, inputs)
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job,), name=f"t2m-serve-file-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> FileJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no file {job_id!r} on this server (it restarted, or the file was one of the oldest "
                                f"{KEPT_FILES} and is gone); upload it again")
        return job

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in sorted(finished, key=lambda j: j.started)[:max(0, len(self._jobs) - KEPT_FILES)]:
            del self._jobs[job.id]

    def _run(self, job: FileJob) -> None:
        started = time.perf_counter()
        try:
            results = known_results(job.inputs, None)
            limit = self.service.limits.max_chars
            for i, row in enumerate(job.inputs.rows):
                if results[i] is None and len(row.source) > limit:
                    results[i] = Translation(input=row.source[:60] + "...", output="", candidates=[], flags=[
                        f"input of {_count(len(row.source))} characters, over the limit of {_count(limit)} "
                        "(t2m serve --max-chars); not translated"])
            job.results = results
            job.done = sum(r is not None for r in results)
            todo = [i for i, r in enumerate(results) if r is None]
            for start in range(0, len(todo), CHUNK_ROWS):
                rows = todo[start:start + CHUNK_ROWS]
                found = self.service.run(job.task, [job.inputs.rows[i].source for i in rows], job.system,
                                         job.num_beams, n_best=False)
                for i, result in zip(rows, found):
                    results[i] = result
                job.done += len(rows)
            job.text = format_output(job.task, job.inputs, results, None)
            job.state = "done"
        except Exception as err:  # noqa: BLE001 - a failed file is reported on its status, the server stays up

            log.exception("file %s (%s) failed", job.id, job.name)
            job.error, job.state = f"translating failed after {job.done} of {job.rows} rows: {error_line(err)}", "failed"
        job.seconds = round(time.perf_counter() - started, 3)
