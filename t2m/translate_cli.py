"""``t2m translate``: a thin wrapper over :meth:`t2m.generate.Translator.translate`.

Inputs are texts on the command line, or a file:

- a ChEBI-20-style TSV (header with ``SMILES`` and ``description``): the output is MolT5's 3-column
  predictions TSV with the ground truth filled in, ready for ``t2m eval``;
- JSONL (one object a line, the input under ``input``, or ``description``/``smiles`` by task): JSONL out,
  one object a line with ``input``, ``output``, ``candidates``, ``scores`` and ``flags``;
- anything else: plain text, one input a line; the output holds one output a line (with ``--n-best``,
  the candidates of a row separated by tabs).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from t2m.tasks import TASKS, TEXT2MOL

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="inputs to translate (or use --input)")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--model", help="checkpoint directory (default: the model shipped with t2m)")
    parser.add_argument("--input", help="input file: ChEBI-20 TSV, JSONL, or plain text (one input a line)")
    parser.add_argument("--output", help="output file (default: standard output)")
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--n-best", type=int, default=None, help="return this many candidates per input")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs per batch (default: 32 greedy, 64 beam search)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes sharing the inputs (each with its own model copy and cores/N "
                             "threads; t2m.decode_pool); default 1: this process")
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
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
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
    parser.add_argument("--knn-k", type=int)
    parser.add_argument("--knn-lambda", type=float)
    parser.add_argument("--knn-temperature", type=float)
    parser.add_argument("--knn-pairs", type=int, metavar="N",
                        help="retrieve only among the tokens of each input's N nearest training pairs (by Morgan "
                             "Tanimoto of molecules / TF-IDF of descriptions; SK-MT); 0 = the whole store "
                             "(default: the store's tuned value, t2m tune --pairs)")
    parser.add_argument("--prompt-style", choices=("textchem", "none"),
                        help="override the checkpoint's prompt style (none: single-task models such as MolT5)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled weights (pytorch_model.bin); only for checkpoints you trust")


def _read_inputs(path: Path, task: str):
    """(inputs, references or None, kind) from a file."""
    from t2m.data import read_jsonl_records, read_tsv_records

    with path.open(encoding="utf-8") as f:
        first = f.readline().rstrip("\n")
    if path.suffix in (".jsonl", ".ndjson"):
        # pair files (``smiles``/``description`` keys) go through the checked reader; others carry ``input``
        head = json.loads(first) if first.strip() else {}
        key = "description" if task == TEXT2MOL else "smiles"
        if "input" not in head and key in head:
            return [r[key] for r in read_jsonl_records(path)], None, "jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r.get("input", "") for r in rows], None, "jsonl"
    header = [h.strip().lower() for h in first.split("\t")]
    if "smiles" in header and "description" in header:
        records = read_tsv_records(path)
        sources = [r["description"] if task == TEXT2MOL else r["smiles"] for r in records]
        references = [r["smiles"] if task == TEXT2MOL else r["description"] for r in records]
        return sources, references, "tsv"
    return path.read_text(encoding="utf-8").splitlines(), None, "text"


def translate_in_workers(args, inputs: list[str], options: dict) -> list:
    """``--jobs N``: the inputs split over N worker processes (:class:`t2m.decode_pool.DecodePool`); the
    workers' bad-input warnings are given here, by row of the input file."""
    from t2m.decode_pool import DecodePool, KNNSpec
    from t2m.modeling import default_model_dir

    model = args.model or default_model_dir()
    knn = None
    if args.knn:  # the store's tuned k, λ, T unless given, as in one process
        from datastore.store import Datastore

        params = Datastore.load(args.knn).knn_params.replace(k=args.knn_k, lambda_=args.knn_lambda,
                                                             temperature=args.knn_temperature, pairs=args.knn_pairs)
        knn = KNNSpec(str(args.knn), params.k, params.lambda_, params.temperature, pairs=params.pairs or 0)
    with DecodePool(model, args.jobs, allow_pickle=args.allow_pickle, prompt_style=args.prompt_style,
                    stores=[args.knn] if args.knn else ()) as pool:
        results = pool.translate(inputs, knn=knn, **options).translations
    for row, result in enumerate(results, start=1):
        if result.flags:
            log.warning("row %d: %s", row, "; ".join(result.flags))
    return results


def run(args) -> int:
    from t2m.generate import KNNSettings, Translator

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if bool(args.texts) == bool(args.input):
        raise SystemExit("t2m translate: give either TEXT arguments or --input FILE")
    if args.input:
        inputs, references, kind = _read_inputs(Path(args.input), args.task)
    else:
        inputs, references, kind = list(args.texts), None, "text"
    options = dict(task=args.task, num_beams=args.num_beams, num_return_sequences=args.n_best,
                   batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, valid_smiles=args.valid_smiles,
                   smiles_syntax=args.smiles_syntax, smiles_valence=args.smiles_valence,
                   canonicalize=args.canonical, do_sample=args.sample,
                   top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                   no_repeat_ngram_size=args.no_repeat_ngram_size, length_penalty=args.length_penalty,
                   mbr=args.mbr, progress=args.input is not None)
    if args.jobs > 1:
        results = translate_in_workers(args, inputs, options)
    else:
        translator = Translator.from_pretrained(args.model, allow_pickle=args.allow_pickle,
                                                prompt_style=args.prompt_style)
        knn = None
        if args.knn:
            knn = KNNSettings(args.knn, k=args.knn_k, lambda_=args.knn_lambda, temperature=args.knn_temperature,
                              pairs=args.knn_pairs)
        results = translator.translate(inputs, knn=knn, **options)
    outputs = [r.output for r in results]
    if kind == "tsv" and args.output:
        from t2m.data import write_predictions

        write_predictions(args.output, args.task, inputs, references, outputs)
        text = None
    elif kind == "jsonl":
        text = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in results)
    elif args.n_best:
        text = "".join("\t".join(r.candidates) + "\n" for r in results)
    else:
        text = "".join(o + "\n" for o in outputs)
    if text is not None:
        if args.output:
            from t2m.io import atomic_write_text

            atomic_write_text(args.output, text)
        else:
            sys.stdout.write(text)
    flagged = sum(1 for r in results if r.flags)
    if flagged:
        print(f"{flagged} of {len(results)} rows flagged (see warnings above)", file=sys.stderr)
    return 0
