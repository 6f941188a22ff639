"""``t2m translate``: a thin wrapper over :meth:`t2m.generate.Translator.translate`.

Inputs are texts on the command line, or a file (``--input``) read as ``--format``:

- ``tsv``: a ChEBI-20-style TSV, or MolT5's predictions TSV: a tab-separated header naming the input column
  (``description`` for text2mol, ``SMILES`` for mol2text; any case) and optionally the reference
  (``SMILES``/``description``, else ``ground truth``) and ``CID``. The output is MolT5's 3-column predictions
  TSV (``description|SMILES``, ``ground truth``, ``output``), ready for ``t2m eval``, on stdout as in ``--output``;
- ``jsonl``: one object a line; the input under ``input``, else ``description`` (text2mol) / ``smiles``
  (mol2text), keys matched in any case; ``cid`` optional. JSONL out: one object a line with ``input``,
  ``output``, ``candidates``, ``scores``, ``flags`` (and ``cid`` when the row had one);
- ``text``: one input a line; the output holds one output a line (with ``--n-best``, the candidates of a
  row separated by tabs);
- ``auto`` (default): a UTF-8 BOM is dropped and CRLF line ends accepted; JSONL when the file ends in
  ``.jsonl``/``.ndjson`` or its first line is a JSON object, TSV when its first line is a header naming the
  input column, text when no line holds a tab; anything else (tabs without such a header) is refused with
  the fix rather than guessed.

Every row of the input gives one row of output, in order: a row that cannot be read (too few fields,
broken JSON, no input key) gets an empty output and a flag naming why; the flagged rows are listed on
stderr.

With ``--output``, finished rows are kept in ``OUTPUT.partial`` as they are done; an interrupted run
(Ctrl-C, a crash, a killed job) continues where it stopped when the same command is run again, and the
final file is the one an uninterrupted run writes. The output is written atomically; an existing
``--output`` is refused unless ``--overwrite``. Options are checked before the model loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from t2m.inputs import FORMATS, Inputs, InputRow, UsageError, read_inputs  # noqa: F401 (read_inputs: the readers' home is t2m.inputs)
from t2m.option_checks import check_model_option, check_range as _check_range
from t2m.tasks import MOL2TEXT, TASKS, TEXT2MOL

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
PARTIAL_FORMAT = "t2m-translate-partial"
# rows listed one by one on stderr when flagged; the rest are counted
MAX_ROW_WARNINGS = 20


def add_arguments(parser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="inputs to translate (or use --input)")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="text2mol: descriptions to SMILES; mol2text: SMILES to descriptions")
    parser.add_argument("--model", help="checkpoint directory (default: the model shipped with t2m)")
    parser.add_argument("--input", help="input file: ChEBI-20/MolT5 TSV, JSONL, or plain text (one input a line)")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="how to read --input: auto tells TSV (by its header), JSONL and text apart and refuses "
                             "a file it cannot")
    parser.add_argument("--output", help="output file, written atomically; finished rows are kept in OUTPUT.partial "
                                         "so an interrupted run resumes (default: standard output)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="discard the rows an interrupted run kept in OUTPUT.partial and start over")
    parser.add_argument("--num-beams", type=int, default=1, help="beams of beam search (1: greedy search)")
    parser.add_argument("--n-best", type=int, default=None,
                        help="return this many candidates per input (at most --num-beams; default: 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs per batch (default: 32 greedy, 64 beam search)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens generated per output")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes sharing the inputs (each with its own model copy and cores/N "
                             "threads; t2m.decode_pool); 1: this process")
    parser.add_argument("--no-valid-smiles", dest="valid_smiles", action="store_false",
                        help="text2mol: do not rerank beams to the best one RDKit parses")
    parser.add_argument("--no-smiles-syntax", dest="smiles_syntax", action="store_false",
                        help="text2mol: do not constrain decoding to syntactically possible SMILES (balanced "
                             "branches, ring bonds and brackets; see t2m.smiles_grammar)")
    parser.add_argument("--no-smiles-valence", dest="smiles_valence", action="store_false",
                        help="text2mol: keep the syntax constraint but do not check valences and ring bonds "
                             "(see t2m.smiles_valence)")
    parser.add_argument("--canonical", action="store_true", help="text2mol: write RDKit canonical SMILES")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy/beam search")
    parser.add_argument("--top-p", type=float, help="with --sample: nucleus sampling mass, in (0, 1] (default: off)")
    parser.add_argument("--top-k", type=int, help="with --sample: sample among the k most likely tokens (default: "
                                                  "the transformers default, 50)")
    parser.add_argument("--repetition-penalty", type=float,
                        help="default: the model's recommendation for the task (t2m.json \"decoding\"); 1 = off")
    parser.add_argument("--no-repeat-ngram-size", type=int,
                        help="default: the model's recommendation for the task (the shipped model: 3 for "
                             "mol2text, none for text2mol); 0 = off")
    parser.add_argument("--length-penalty", type=float, help="beam search length penalty (default: the model's, else 1)")
    parser.add_argument("--mbr", choices=("none", "chrf", "bleu"), default="none",
                        help="mol2text: of the beams, return the caption that agrees most with the others by this "
                             "sentence metric (minimum Bayes risk; chrf is the measured best) instead of the most "
                             "probable one")
    parser.add_argument("--knn", metavar="STORE", help="kNN-MT datastore folder built for this model and task")
    parser.add_argument("--knn-k", type=int, help="neighbours retrieved per step (default: the store's tuned k)")
    parser.add_argument("--knn-lambda", type=float,
                        help="weight of the kNN distribution, in [0, 1] (default: the store's tuned lambda)")
    parser.add_argument("--knn-temperature", type=float,
                        help="softmax temperature over neighbour distances, > 0 (default: the store's tuned value)")
    parser.add_argument("--knn-pairs", type=int, metavar="N",
                        help="retrieve only among the tokens of each input's N nearest training pairs (by Morgan "
                             "Tanimoto of molecules / TF-IDF of descriptions; SK-MT); 0 = the whole store "
                             "(default: the store's tuned value, t2m tune --pairs)")
    parser.add_argument("--prompt-style", choices=("textchem", "none"),
                        help="override the checkpoint's prompt style (none: single-task models such as MolT5; "
                             "default: the checkpoint's)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled weights (pytorch_model.bin); only for checkpoints you trust")
    parser.add_argument("--database", type=Path, metavar="FILE",
                        help="training pairs (ChEBI-20 TSV or JSONL) a model trained with neighbours in its input "
                             "retrieves them from (default: the model's own memory, e.g. the shipped model's)")
    parser.add_argument("--show-neighbours", action="store_true",
                        help="add each input's neighbours shown to the model (similarity and target) to the output: "
                             "two more TSV columns, or a tab-separated column in text output (JSONL always has them)")


# ------------------------------------------------------------------------------------------ checks


def check_options(args) -> None:
    """Refuse options the translation cannot use, before anything is loaded (UsageError, exit 2)."""
    if args.texts and args.input:
        raise UsageError("give either TEXT arguments or --input FILE, not both")
    if not args.texts and not args.input:
        raise UsageError("nothing to translate: give TEXT arguments or --input FILE")
    if args.format != "auto" and not args.input:
        raise UsageError(f"--format {args.format} reads an --input file; leave it out for TEXT arguments")
    _check_range("--num-beams", args.num_beams, 1, what="must be 1 or more (1: greedy search)")
    _check_range("--n-best", args.n_best, 1, what="must be 1 or more")
    if args.n_best and args.n_best > args.num_beams and not args.sample:
        raise UsageError(f"--n-best {args.n_best} needs --num-beams {args.n_best} or more (or --sample)")
    _check_range("--batch-size", args.batch_size, 1, what="must be 1 or more")
    if args.database is not None and not Path(args.database).is_file():
        raise UsageError(f"--database {args.database}: no such file; give a ChEBI-20-format TSV (or JSONL) of "
                         "training pairs")
    _check_range("--max-new-tokens", args.max_new_tokens, 1, what="must be 1 or more")
    _check_range("--jobs", args.jobs, 1, what="must be 1 or more (1: this process)")
    _check_range("--top-p", args.top_p, 0, 1, low_open=True, what="must be in (0, 1]")
    _check_range("--top-k", args.top_k, 0, what="must be 0 or more")
    _check_range("--repetition-penalty", args.repetition_penalty, 0, low_open=True, what="must be > 0 (1: off)")
    _check_range("--no-repeat-ngram-size", args.no_repeat_ngram_size, 0, what="must be 0 or more (0: off)")
    if args.mbr != "none" and args.task != MOL2TEXT:
        raise UsageError(f"--mbr {args.mbr} chooses among captions (mol2text); leave it out for {args.task}")
    knn_options = {"--knn-k": args.knn_k, "--knn-lambda": args.knn_lambda,
                   "--knn-temperature": args.knn_temperature, "--knn-pairs": args.knn_pairs}
    given = [name for name, value in knn_options.items() if value is not None]
    if given and not args.knn:
        raise UsageError(f"{given[0]} sets retrieval: give the datastore with --knn STORE, or leave it out")
    _check_range("--knn-k", args.knn_k, 1, what="must be 1 or more")
    _check_range("--knn-lambda", args.knn_lambda, 0, 1, what="must be in [0, 1]")
    _check_range("--knn-temperature", args.knn_temperature, 0, low_open=True, what="must be > 0")
    _check_range("--knn-pairs", args.knn_pairs, 0, what="must be 0 or more (0: the whole store)")


def check_model(args) -> Path:
    """The checkpoint folder to load; UsageError when --model is not one."""
    return check_model_option(args.model, args.allow_pickle)


def check_store(args):
    """The datastore of --knn, its files and task checked (the model is checked when it is loaded)."""
    if not args.knn:
        return None
    from datastore.store import DatastoreError, Datastore

    try:
        store = Datastore.load(args.knn)
        store.check_matches(task=args.task)
    except DatastoreError as err:
        raise UsageError(f"--knn {err}") from None
    return store


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def signature(args, inputs: Inputs, model_dir: Path) -> dict[str, Any]:
    """What the finished rows of a run depend on: a resumed run must have the same."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    model = {"path": str(model_dir.resolve()), "config": _file_digest(model_dir / "config.json"),
             "weights": [[w.name, w.stat().st_size, int(w.stat().st_mtime)] for w in weights]}
    store = None
    if args.knn:
        store = {"path": str(Path(args.knn).resolve()), "meta": _file_digest(Path(args.knn) / "datastore.json")}
    options = {name: getattr(args, name) for name in (
        "task", "format", "num_beams", "n_best", "max_new_tokens", "valid_smiles", "smiles_syntax",
        "smiles_valence", "canonical", "sample", "top_p", "top_k", "repetition_penalty", "no_repeat_ngram_size",
        "length_penalty", "mbr", "knn_k", "knn_lambda", "knn_temperature", "knn_pairs", "prompt_style")}
    return {"input": inputs.digest, "rows": len(inputs.rows), "kind": inputs.kind, "model": model,
            "store": store, "options": options}


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
        self._handle = None

    def load(self, sig: dict[str, Any], resume: bool) -> None:
        """Read the rows kept by an earlier run of the same translation; UsageError when they are of another."""
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
            raise UsageError(f"{self.path}: not a t2m translate partial file (damaged?); pass --no-resume to "
                             "start over (it is replaced)")
        done: dict[int, dict] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                done[int(entry["row"])] = dict(entry["result"])
            except (ValueError, KeyError, TypeError):
                if number < len(lines) - 1 and any(rest.strip() for rest in lines[number:]):
                    raise UsageError(f"{self.path}:{number}: damaged line; pass --no-resume to start over") from None
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
            if "options" in changed:
                names += " (" + ", ".join("--" + k.replace("_", "-") for k in sorted(old.get("options", {}))
                                          if old.get("options", {}).get(k) != sig["options"].get(k)) + ")"
            raise UsageError(f"{self.path} keeps {len(done)} rows of another translation (different {names}); "
                             "rerun that command to finish it, or pass --no-resume to start this one over")
        self.done = done

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

    def add(self, rows: list[int], results: list) -> None:
        for row, result in zip(rows, results):
            self.done[row] = result.to_dict()
            self._handle.write(json.dumps({"row": row, "result": self.done[row]}, ensure_ascii=False) + "\n")
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


def check_output(args, inputs_path: Path | None) -> Path | None:
    """The --output path, checked: not a folder, not the input, not an existing file unless --overwrite
    (or kept rows of this translation are resumed: checked later), in a folder that can be written."""
    if not args.output:
        return None
    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"--output {output}: a folder; give a file path")
    if inputs_path is not None and (_same_file(output, inputs_path) or output.resolve() == inputs_path.resolve()):
        raise UsageError(f"--output {output} is the --input file; write the translation to another file")
    parent = output.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--output {output}: {parent} is a file, not a folder; choose another --output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output {output}: the folder {parent} is not writable; choose another --output")
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


def _chunk_rows(args) -> int:
    """Rows translated (and kept) at a time: four batches (``T2M_TRANSLATE_CHUNK`` overrides)."""
    from t2m.generate import default_batch_size

    given = os.environ.get("T2M_TRANSLATE_CHUNK", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return 4 * (args.batch_size or default_batch_size(args.num_beams))


def _test_delay() -> None:
    """Test hook (``_T2M_TEST_CHUNK_DELAY`` seconds after each kept chunk): lets a test interrupt a run
    between chunks."""
    delay = os.environ.get("_T2M_TEST_CHUNK_DELAY")
    if delay:
        time.sleep(float(delay))


def translate_options(args, store) -> tuple:
    """The (DecodingOptions, SmilesConstraints, RetrievalOptions or None) of the command line's flags; the
    --knn-* flags given replace the store's (tuned) parameters, the rest are the store's."""
    from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints

    decoding = DecodingOptions(num_beams=args.num_beams, num_return_sequences=args.n_best, batch_size=args.batch_size,
                               max_new_tokens=args.max_new_tokens, do_sample=args.sample, top_p=args.top_p,
                               top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                               no_repeat_ngram_size=args.no_repeat_ngram_size, length_penalty=args.length_penalty,
                               mbr=args.mbr)
    constraints = SmilesConstraints(valid_smiles=args.valid_smiles, syntax=args.smiles_syntax,
                                    valence=args.smiles_valence, canonicalize=args.canonical)
    retrieval = None
    if store is not None:
        retrieval = RetrievalOptions.with_overrides(store, args.knn_k, args.knn_lambda, args.knn_temperature,
                                                    args.knn_pairs)
    return decoding, constraints, retrieval


def translate_rows(args, model_dir: Path, store, sources: dict[int, str], on_chunk) -> None:
    """Translate ``sources`` (row -> text) in chunks, calling ``on_chunk(rows, results)`` as each finishes."""
    from tqdm.auto import tqdm

    decoding, constraints, retrieval = translate_options(args, store)
    rows = sorted(sources)
    chunk = _chunk_rows(args)
    bar = tqdm(total=len(rows), desc=f"translate {args.task}", unit="row", dynamic_ncols=True,
               disable=args.input is None or not rows)

    def done(chunk_rows: list[int], results: list) -> None:
        on_chunk(chunk_rows, results)
        bar.update(len(chunk_rows))
        _test_delay()

    try:
        if args.jobs > 1:
            from t2m.decode_pool import DecodePool

            with DecodePool(model_dir, args.jobs, allow_pickle=args.allow_pickle, prompt_style=args.prompt_style,
                            stores=[args.knn] if args.knn else (), database=args.database) as pool:
                pool.translate([sources[r] for r in rows], args.task, decoding, constraints, retrieval,
                               chunk_size=chunk,
                               on_chunk=lambda indices, results: done([rows[i] for i in indices], results))
            return
        from t2m.generate import Translator

        translator = Translator.from_pretrained(model_dir, allow_pickle=args.allow_pickle,
                                                prompt_style=args.prompt_style, database=args.database)
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            done(part, translator.translate([sources[r] for r in part], args.task, decoding, constraints, retrieval))
    finally:
        bar.close()


def report_flags(inputs: Inputs, results: list) -> None:
    flagged = [(i, r) for i, r in enumerate(results) if r.flags]
    for i, result in flagged[:MAX_ROW_WARNINGS]:
        where = f" ({inputs.path}:{inputs.rows[i].line})" if inputs.path is not None else ""
        log.warning("row %d: %s%s", i + 1, "; ".join(result.flags), where)
    if flagged:
        listed = "listed above" if len(flagged) <= MAX_ROW_WARNINGS else f"the first {MAX_ROW_WARNINGS} listed above"
        print(f"t2m translate: {len(flagged)} of {len(results)} rows flagged ({listed})", file=sys.stderr)


def run(args) -> int:
    from t2m.cli import error_line

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    check_options(args)
    if args.input:
        inputs = read_inputs(args.input, args.task, args.format)
    else:
        inputs = Inputs("text", [InputRow(line=i, source=t) for i, t in enumerate(args.texts, start=1)],
                        hashlib.sha256("\n".join(args.texts).encode()).hexdigest())
    output = check_output(args, inputs.path)
    model_dir = check_model(args)
    store = check_store(args)
    sig = signature(args, inputs, model_dir)
    partial = None
    if output is not None:
        partial = Partial(output)
        partial.load(sig, args.resume)
        if output.exists() and not partial.done and not args.overwrite:
            raise UsageError(f"--output {output} already exists; pass --overwrite to replace it, or choose another "
                             "--output")
        try:
            partial.start(sig)
        except OSError as err:
            raise UsageError(f"--output {output}: cannot write beside it ({error_line(err)}); choose a folder "
                             "you can write to") from None
        if partial.done:
            print(f"t2m translate: resuming: {len(partial.done)} of {len(inputs.rows)} rows were done in an "
                  f"earlier run ({partial.path})", file=sys.stderr)

    from t2m.generate import Translation
    from t2m.neighbours import Neighbour

    results: list = [None] * len(inputs.rows)
    for i, row in enumerate(inputs.rows):
        if row.problem is not None:
            results[i] = Translation(input=row.source, output="", candidates=[], flags=[row.problem])
        elif partial is not None and i in partial.done:
            kept = partial.done[i]
            results[i] = Translation(input=kept.get("input", ""), output=kept.get("output", ""),
                                     candidates=list(kept.get("candidates") or []), scores=kept.get("scores"),
                                     flags=list(kept.get("flags") or []),
                                     neighbours=[Neighbour(**n) for n in kept.get("neighbours") or []])
    todo = {i: inputs.rows[i].source for i, r in enumerate(results) if r is None}
    finished = len(inputs.rows) - len(todo)

    def on_chunk(rows: list[int], chunk_results: list) -> None:
        nonlocal finished
        for row, result in zip(rows, chunk_results):
            results[row] = result
        finished += len(rows)
        if partial is not None:
            partial.add(rows, chunk_results)

    # the rows' flags are reported here, by row of the input, once: not by the translator, per chunk
    generate_log = logging.getLogger("t2m.generate")
    level = generate_log.level
    generate_log.setLevel(logging.ERROR)
    try:
        if todo:
            translate_rows(args, model_dir, store, todo, on_chunk)
    except KeyboardInterrupt:
        if partial is not None:
            partial.close()
            print(f"t2m translate: interrupted: {len(partial.done)} of {len(inputs.rows)} rows kept in "
                  f"{partial.path}; rerun the same command to resume", file=sys.stderr)
        else:
            print(f"t2m translate: interrupted after {finished} of {len(inputs.rows)} rows; nothing kept (the output "
                  "goes to standard output): use --output FILE to make a run resumable", file=sys.stderr)
        return 130
    except BaseException:
        if partial is not None:
            partial.close()
            if not partial.done:
                partial.remove()
        raise
    finally:  # a library caller's (or a test's) logging is left as it was
        generate_log.setLevel(level)
    text = format_output(args.task, inputs, results, args.n_best, args.show_neighbours)
    if output is not None:
        from t2m.data import atomic_write_text

        atomic_write_text(output, text)
        partial.remove()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    report_flags(inputs, results)
    return 0
