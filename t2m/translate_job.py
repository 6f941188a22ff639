"""Translating a batch of inputs end to end, as ``t2m translate`` does: read the inputs, keep finished rows
in ``OUTPUT.partial`` so an interrupted run resumes, decode (in this process or ``jobs`` worker processes,
:mod:`t2m.decoding.pool`), write the output. The command line (:mod:`t2m.cli.translate`) checks its options
and calls :func:`run_translation` with a :class:`TranslateJob`; a Python caller can do the same::

    from t2m.options import DecodingOptions
    from t2m.translate_job import TranslateJob, run_translation

    done = run_translation(TranslateJob(task="mol2text", input="molecules.txt", output="captions.txt",
                                        decoding=DecodingOptions(num_beams=5)))

Inputs are ``texts``, or a file (``input``) read as ``format``:

- ``tsv``: a ChEBI-20-style TSV, or MolT5's predictions TSV: a tab-separated header naming the input column
  (``description`` for text2mol, ``SMILES`` for mol2text; any case) and optionally the reference
  (``SMILES``/``description``, else ``ground truth``) and ``CID``. The output is MolT5's 3-column predictions
  TSV (``description|SMILES``, ``ground truth``, ``output``), ready for ``t2m eval``;
- ``jsonl``: one object a line; the input under ``input``, else ``description`` (text2mol) / ``smiles``
  (mol2text), keys matched in any case; ``cid`` optional. JSONL out: one object a line with ``input``,
  ``output``, ``candidates``, ``scores``, ``flags`` (and ``cid`` when the row had one);
- ``text``: one input a line; the output holds one output a line (with ``n_best``, the candidates of a
  row separated by tabs);
- ``auto`` (default): a UTF-8 BOM is dropped and CRLF line ends accepted; JSONL when the file ends in
  ``.jsonl``/``.ndjson`` or its first line is a JSON object, TSV when its first line is a header naming the
  input column, text when no line holds a tab; anything else (tabs without such a header) is refused with
  the fix rather than guessed.

Every row of the input gives one row of output, in order: a row that cannot be read (too few fields,
broken JSON, no input key) gets an empty output and a flag naming why (:func:`report_flags` lists them).

With ``output``, finished rows are kept in ``OUTPUT.partial`` as they are done; an interrupted run
(Ctrl-C, a crash, a killed job) continues where it stopped when the same job is run again, and the final
file is the one an uninterrupted run writes. The output is written atomically; an existing ``output`` is
refused unless ``overwrite``. The inputs, the output path, the model folder and the datastore are checked
before the model loads: what a job cannot use is a :class:`t2m.errors.OptionError` naming the field
(``output=FILE already exists; pass overwrite=True ...``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from datastore.params import PartialKNNParams
from t2m.decoding.pool import DecodePool
from t2m.decoding.translator import Translation, Translator
from t2m.errors import OptionError, check_range, error_line
from t2m.inputs import InputRow, Inputs, read_inputs
from t2m.io import atomic_write_text, check_writable_file, file_sha256
from t2m.model.checkpoint import checkpoint_dir, read_checkpoint_info
from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints, open_store
from t2m.tasks import TEXT2MOL

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
PARTIAL_FORMAT = "t2m-translate-partial"
# rows listed one by one on stderr when flagged; the rest are counted
MAX_ROW_WARNINGS = 20


@dataclass(frozen=True)
class TranslateJob:
    """One ``t2m translate`` run: ``texts`` or an ``input`` file (read as ``format``), the ``task``, where
    the output goes (``output``; None: :attr:`Translated.text` only, which the command line prints), the
    ``model`` folder (None: the shipped model), the decoding and SMILES options, and kNN-MT retrieval: the
    datastore folder ``knn`` and ``knn_params``, the parameters chosen to replace its tuned ones (the rest
    the store's). ``jobs`` > 1 decodes in that many worker processes."""

    task: str
    texts: Sequence[str] = ()
    input: str | os.PathLike | None = None
    format: str = "auto"
    output: str | os.PathLike | None = None
    overwrite: bool = False
    resume: bool = True
    model: str | os.PathLike | None = None
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    constraints: SmilesConstraints = field(default_factory=SmilesConstraints)
    knn: str | None = None
    knn_params: PartialKNNParams = field(default_factory=PartialKNNParams)
    jobs: int = 1
    prompt_style: str | None = None
    allow_pickle: bool = False
    database: str | os.PathLike | None = None
    show_neighbours: bool = False
    # "model"; "retrieval": no model, the ranked nearest pair's target (Translator.retrieve); None: the
    # checkpoint's default for the task (resolve_system)
    system: str | None = None

    def __post_init__(self) -> None:
        check_range("jobs", self.jobs, 1, rule="must be 1 or more (1: this process)")
        chosen = self.knn_params.given()
        if chosen and not self.knn:
            name, value = next(iter(chosen.items()))
            raise OptionError(f"{name}={value} sets retrieval: give the datastore with knn=STORE, or leave it out")

    def options(self) -> dict[str, Any]:
        """The options a resumed run must share with the one that kept the rows (the keys of 0.1.0's
        partial files)."""
        d, c, knn = self.decoding, self.constraints, self.knn_params
        return {"task": self.task, "format": self.format, "num_beams": d.num_beams, "n_best": d.num_return_sequences,
                "max_new_tokens": d.max_new_tokens, "valid_smiles": c.valid_smiles, "smiles_syntax": c.syntax,
                "smiles_valence": c.valence, "canonical": c.canonicalize, "sample": d.do_sample, "top_p": d.top_p,
                "top_k": d.top_k, "repetition_penalty": d.repetition_penalty,
                "no_repeat_ngram_size": d.no_repeat_ngram_size, "length_penalty": d.length_penalty, "mbr": d.mbr,
                "knn_k": knn.k, "knn_lambda": knn.lambda_, "knn_temperature": knn.temperature,
                "knn_pairs": knn.pairs, "prompt_style": self.prompt_style, "system": self.system}


@dataclass
class Translated:
    """What :func:`run_translation` did: the inputs read, one :class:`t2m.decoding.translator.Translation` per row,
    the output's text (also written to ``job.output`` when given)."""

    inputs: Inputs
    results: list
    text: str


class TranslationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a translation, after the finished rows were kept; ``message`` says where and how to
    resume (``t2m translate`` prints it and exits 130)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------------------------------ checks


def check_model(job: TranslateJob) -> Path:
    """The checkpoint folder to load; OptionError when ``model`` is not one."""
    return checkpoint_dir(job.model, job.allow_pickle)


def resolve_system(job: TranslateJob, model_dir: Path) -> TranslateJob:
    """``job`` with its system decided: as given, else "model" with a kNN datastore (only the model decodes
    with one), else the checkpoint's default for the task (``t2m.json`` "system"; "model" when it has none)."""
    import dataclasses

    system, d = job.system, job.decoding
    if system == "retrieval" and job.knn:
        raise OptionError(f"knn={job.knn} decodes with the model: leave it out with system=retrieval (no model)")
    if system is None:
        try:
            system = "model" if job.knn else read_checkpoint_info(model_dir).default_system(job.task)
        except ValueError as err:
            raise OptionError(str(err)) from None
        if system == "retrieval" and (d.num_beams > 1 or d.do_sample or d.mbr != "none"):
            log.warning("the checkpoint's default system for %s is retrieval (no model), which does not decode: "
                        "the search options are not used; the system model decodes with the model", job.task)
    if system == "model" and d.num_return_sequences and d.num_return_sequences > d.num_beams and not d.do_sample:
        raise OptionError(f"num_return_sequences={d.num_return_sequences} needs num_beams={d.num_return_sequences} "
                          "or more (or do_sample=True)")
    return dataclasses.replace(job, system=system)


def check_store(job: TranslateJob):
    """The datastore of ``knn``, its files and task checked (the model is checked when it is loaded)."""
    return open_store(job.knn, task=job.task, field="knn") if job.knn else None


def signature(job: TranslateJob, inputs: Inputs, model_dir: Path) -> dict[str, Any]:
    """What the finished rows of a run depend on: a resumed run must have the same."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    model = {"path": str(model_dir.resolve()), "config": file_sha256(model_dir / "config.json", default=""),
             "weights": [[w.name, w.stat().st_size, int(w.stat().st_mtime)] for w in weights]}
    store = None
    if job.knn:
        store = {"path": str(Path(job.knn).resolve()), "meta": file_sha256(Path(job.knn) / "datastore.json", default="")}
    return {"input": inputs.digest, "rows": len(inputs.rows), "kind": inputs.kind, "model": model,
            "store": store, "options": job.options()}


# ------------------------------------------------------------------------------------------ output


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


class Partial:
    """The finished rows of one translation, kept beside its output (``OUTPUT.partial``): a JSON line with
    the run's :func:`signature`, then one line ``{"row": i, "result": {...}}`` per finished row, appended
    and synced a chunk at a time. A line cut short by a kill is ignored."""

    def __init__(self, output: Path):
        self.path = output.with_name(output.name + PARTIAL_SUFFIX)
        self.done: dict[int, dict] = {}
        self.extra: list[dict] = []  # per kept line, the fields :meth:`add` was given besides row and result
        self._handle = None

    def load(self, sig: dict[str, Any], resume: bool) -> None:
        """Read the rows kept by an earlier run of the same translation; OptionError when they are of another."""
        if not self.path.exists():
            return
        if not resume:
            self.path.unlink()
            return
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")
            head = json.loads(lines[0])
        except (OSError, UnicodeDecodeError, ValueError, IndexError):
            head = None
        if not isinstance(head, dict) or head.get("format") != PARTIAL_FORMAT:
            raise OptionError(f"{self.path}: not a t2m translate partial file (damaged?); pass resume=False to "
                              "start over (it is replaced)")
        done: dict[int, dict] = {}
        extra: list[dict] = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                done[int(entry["row"])] = dict(entry["result"])
                extra.append({k: v for k, v in entry.items() if k not in ("row", "result")})
            except (ValueError, KeyError, TypeError):
                if number < len(lines) - 1 and any(rest.strip() for rest in lines[number:]):
                    raise OptionError(f"{self.path}:{number}: damaged line; pass resume=False to start over") from None
                # the last line, cut short by a kill: that row is done again
        old = head.get("signature", {})
        if old != sig:
            if not done:
                self.path.unlink()
                return
            changed = sorted(k for k in set(sig) | set(old) if sig.get(k) != old.get(k))
            what = {"input": "input file", "rows": "input rows", "kind": "input format", "model": "model",
                    "store": "datastore", "options": "options"}
            names = ", ".join(what.get(k, k) for k in changed)
            if "options" in changed:  # as this run has them
                names += " (" + ", ".join(f"{k}={sig['options'].get(k)}" for k in sorted(old.get("options", {}))
                                          if old.get("options", {}).get(k) != sig["options"].get(k)) + ")"
            raise OptionError(f"{self.path} keeps {len(done)} rows of another translation (different {names}); "
                              "rerun that command to finish it, or pass resume=False to start this one over")
        self.done, self.extra = done, extra

    def start(self, sig: dict[str, Any]) -> None:
        """Open the file for appending (created with the header when new): the writability check, before
        the model loads."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        if not new:  # a line cut short by a kill goes, so that the next row starts a line of its own
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(self.path, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
        self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
        if new:
            self._handle.write(json.dumps({"format": PARTIAL_FORMAT, "signature": sig}) + "\n")
            self._sync()

    def add(self, rows: list[int], results: list, **extra: Any) -> None:
        """Keep ``results`` (Translations) of ``rows``; ``extra``: JSON fields written on each row's line
        (read back into :attr:`extra`)."""
        for row, result in zip(rows, results):
            self.done[row] = result.to_dict()
            self.extra.append(dict(extra))
            self._handle.write(json.dumps({"row": row, "result": self.done[row], **extra}, ensure_ascii=False) + "\n")
        self._sync()

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def check_output(job: TranslateJob, inputs_path: Path | None) -> Path | None:
    """The ``output`` path, checked: not a folder, not the input, not an existing file unless ``overwrite``
    (or kept rows of this translation are resumed: checked later), in a folder that can be written."""
    if not job.output:
        return None
    output = Path(job.output)
    check_writable_file(output, "output")
    if inputs_path is not None and (_same_file(output, inputs_path) or output.resolve() == inputs_path.resolve()):
        raise OptionError(f"output={output} is also input={inputs_path}; write the translation to another file")
    return output


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _neighbour_columns(result) -> list[str]:
    """(similarities, targets) of the neighbours a result's model read, ' | '-joined: two output columns."""
    found = [n if isinstance(n, dict) else {"similarity": n.similarity, "target": n.target} for n in result.neighbours]
    return [" | ".join(f"{n['similarity']:.3f}" for n in found), " | ".join(n["target"] for n in found)]


def format_output(task: str, inputs: Inputs, results: list, n_best: int | None, show_neighbours: bool = False) -> str:
    """The output file's text: one row per input row (see the module docstring); ``show_neighbours`` adds
    the neighbours' similarities and targets (TSV: two columns after MolT5's three; text: after the output)."""
    extra = _neighbour_columns if show_neighbours else (lambda result: [])
    if inputs.kind == "tsv":
        header = [f"{'description' if task == TEXT2MOL else 'SMILES'}", "ground truth", "output"]
        lines = ["\t".join(header + (["neighbour similarity", "neighbour"] if show_neighbours else []))]
        lines += ["\t".join(map(_one_line, (row.source, row.reference, result.output, *extra(result))))
                  for row, result in zip(inputs.rows, results)]
        return "\n".join(lines) + "\n"
    if inputs.kind == "jsonl":
        out = []
        for row, result in zip(inputs.rows, results):
            obj = result.to_dict()
            if row.cid is not None:
                obj = {"cid": row.cid, **obj}
            out.append(json.dumps(obj, ensure_ascii=False) + "\n")
        return "".join(out)
    if n_best:
        return "".join("\t".join(map(_one_line, r.candidates or [r.output])) + "\n" for r in results)
    return "".join("\t".join(map(_one_line, (r.output, *extra(r)))) + "\n" for r in results)


# ------------------------------------------------------------------------------------------ translating


def _chunk_rows(job: TranslateJob) -> int:
    """Rows translated (and kept) at a time: four batches (``T2M_TRANSLATE_CHUNK`` overrides)."""
    given = os.environ.get("T2M_TRANSLATE_CHUNK", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return 4 * job.decoding.batch_size_or_default()


def _test_delay() -> None:
    """Test hook (``_T2M_TEST_CHUNK_DELAY`` seconds after each kept chunk): lets a test interrupt a run
    between chunks."""
    delay = os.environ.get("_T2M_TEST_CHUNK_DELAY")
    if delay:
        time.sleep(float(delay))


def retrieval_options(job: TranslateJob, store) -> RetrievalOptions | None:
    """The RetrievalOptions of ``job`` (None without a store): the ``knn_params`` given replace the store's
    (tuned) parameters, the rest are the store's."""
    return None if store is None else RetrievalOptions(store, job.knn_params if job.knn_params.given() else None)


def translate_rows(job: TranslateJob, model_dir: Path, store, sources: dict[int, str], on_chunk) -> None:
    """Translate ``sources`` (row -> text) in chunks, calling ``on_chunk(rows, results)`` as each finishes."""
    from tqdm.auto import tqdm

    decoding, constraints, retrieval = job.decoding, job.constraints, retrieval_options(job, store)
    rows = sorted(sources)
    chunk = _chunk_rows(job)
    bar = tqdm(total=len(rows), desc=f"translate {job.task}", unit="row", dynamic_ncols=True,
               disable=job.input is None or not rows)

    def done(chunk_rows: list[int], results: list) -> None:
        on_chunk(chunk_rows, results)
        bar.update(len(chunk_rows))
        _test_delay()

    try:
        if job.jobs > 1 and job.system == "model":
            with DecodePool(model_dir, job.jobs, allow_pickle=job.allow_pickle, prompt_style=job.prompt_style,
                            stores=[job.knn] if job.knn else (), database=job.database) as pool:
                pool.translate([sources[r] for r in rows], job.task, decoding, constraints, retrieval,
                               chunk_size=chunk,
                               on_chunk=lambda indices, results: done([rows[i] for i in indices], results))
            return

        translator = (Translator.for_retrieval(model_dir, database=job.database) if job.system == "retrieval" else
                      Translator.from_pretrained(model_dir, allow_pickle=job.allow_pickle,
                                                 prompt_style=job.prompt_style, database=job.database))
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            texts = [sources[r] for r in part]
            if job.system == "retrieval":
                done(part, translator.retrieve(texts, job.task, decoding.num_return_sequences or 1))
            else:
                done(part, translator.translate(texts, job.task, decoding, constraints, retrieval))
    finally:
        bar.close()


def report_flags(inputs: Inputs, results: list) -> None:
    """List the flagged rows (logged warnings, the first ``MAX_ROW_WARNINGS``) and count them on stderr."""
    flagged = [(i, r) for i, r in enumerate(results) if r.flags]
    for i, result in flagged[:MAX_ROW_WARNINGS]:
        where = f" ({inputs.path}:{inputs.rows[i].line})" if inputs.path is not None else ""
        log.warning("row %d: %s%s", i + 1, "; ".join(result.flags), where)
    if flagged:
        listed = "listed above" if len(flagged) <= MAX_ROW_WARNINGS else f"the first {MAX_ROW_WARNINGS} listed above"
        print(f"t2m translate: {len(flagged)} of {len(results)} rows flagged ({listed})", file=sys.stderr)


# ------------------------------------------------------------------------------------------ the run


def read_job_inputs(job: TranslateJob) -> Inputs:
    """The rows to translate: ``input`` read as ``format``, else ``texts`` one row each."""
    if job.input:
        return read_inputs(job.input, job.task, job.format)
    texts = list(job.texts)
    return Inputs("text", [InputRow(line=i, source=t) for i, t in enumerate(texts, start=1)],
                  hashlib.sha256("\n".join(texts).encode()).hexdigest())


def open_partial(job: TranslateJob, output: Path, sig: dict[str, Any], rows: int) -> Partial:
    """``OUTPUT.partial``: its kept rows loaded (or discarded without ``resume``) and opened for appending;
    OptionError when ``output`` exists and there are no kept rows to resume (unless ``overwrite``)."""
    partial = Partial(output)
    partial.load(sig, job.resume)
    if output.exists() and not partial.done and not job.overwrite:
        raise OptionError(f"output={output} already exists; pass overwrite=True to replace it, or choose another "
                          "output=FILE")
    try:
        partial.start(sig)
    except OSError as err:
        raise OptionError(f"output={output}: cannot write beside it ({error_line(err)}); choose a folder "
                          "you can write to") from None
    if partial.done:
        print(f"t2m translate: resuming: {len(partial.done)} of {rows} rows were done in an "
              f"earlier run ({partial.path})", file=sys.stderr)
    return partial


def known_results(inputs: Inputs, partial: Partial | None) -> list:
    """One entry per row: a Translation for a row that cannot be read (flagged) or was kept by an earlier
    run, None for a row to translate."""
    results: list = [None] * len(inputs.rows)
    for i, row in enumerate(inputs.rows):
        if row.problem is not None:
            results[i] = Translation(input=row.source, output="", candidates=[], flags=[row.problem])
        elif partial is not None and i in partial.done:
            results[i] = Translation.from_dict(partial.done[i])
    return results


def run_translation(job: TranslateJob) -> Translated:
    """Run ``job`` (see the module docstring): check its inputs, output, model and datastore (OptionError)
    before the model loads, translate the rows not kept by an earlier run, write ``job.output`` (atomically;
    its ``.partial`` then goes). Ctrl-C raises :class:`TranslationInterrupted` after the finished rows are
    kept. The flagged rows are not reported here: :func:`report_flags`."""
    if bool(job.texts) == bool(job.input):
        raise OptionError("give either texts or input=FILE, not both" if job.texts
                          else "nothing to translate: give texts or input=FILE")
    inputs = read_job_inputs(job)
    output = check_output(job, inputs.path)
    model_dir = check_model(job)
    job = resolve_system(job, model_dir)
    store = check_store(job)
    sig = signature(job, inputs, model_dir)
    partial = open_partial(job, output, sig, len(inputs.rows)) if output is not None else None

    results = known_results(inputs, partial)
    todo = {i: inputs.rows[i].source for i, r in enumerate(results) if r is None}
    finished = len(inputs.rows) - len(todo)

    def on_chunk(rows: list[int], chunk_results: list) -> None:
        nonlocal finished
        for row, result in zip(rows, chunk_results):
            results[row] = result
        finished += len(rows)
        if partial is not None:
            partial.add(rows, chunk_results)

    # the rows' flags are reported by row of the input, once (report_flags): not by the translator, per chunk
    generate_log = logging.getLogger("t2m.decoding.translator")
    level = generate_log.level
    generate_log.setLevel(logging.ERROR)
    try:
        if todo:
            translate_rows(job, model_dir, store, todo, on_chunk)
    except KeyboardInterrupt:
        if partial is not None:
            partial.close()
            raise TranslationInterrupted(
                f"t2m translate: interrupted: {len(partial.done)} of {len(inputs.rows)} rows kept in "
                f"{partial.path}; rerun the same command to resume") from None
        raise TranslationInterrupted(
            f"t2m translate: interrupted after {finished} of {len(inputs.rows)} rows; nothing kept (the output "
            "goes to standard output): use output=FILE to make a run resumable") from None
    except BaseException:
        if partial is not None:
            partial.close()
            if not partial.done:
                partial.remove()
        raise
    finally:  # a library caller's (or a test's) logging is left as it was
        generate_log.setLevel(level)
    text = format_output(job.task, inputs, results, job.decoding.num_return_sequences, job.show_neighbours)
    if output is not None:
        atomic_write_text(output, text)
        partial.remove()
    return Translated(inputs, results, text)
