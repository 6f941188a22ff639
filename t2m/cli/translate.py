"""``t2m translate``: a thin wrapper over :func:`t2m.translate_job.run_translation` (which reads the inputs,
keeps finished rows in ``OUTPUT.partial`` so an interrupted run resumes, decodes with
:meth:`t2m.decoding.translator.Translator.translate` or ``--jobs`` worker processes, and writes the output; its
docstring describes the formats).

Inputs are texts on the command line, or a file (``--input``) read as ``--format`` (``tsv``: a ChEBI-20 or
MolT5 predictions TSV, written back as MolT5's 3-column predictions TSV for ``t2m eval``; ``jsonl``;
``text``: one input a line; ``auto``: told apart, or refused with the fix rather than guessed). Every row of
the input gives one row of output, in order; the flagged rows are listed on stderr. Without ``--output`` the
output goes to standard output. The options are checked before the model loads: here (:func:`check_options`)
and, their ranges, by the option objects (:mod:`t2m.options`, :class:`datastore.params.PartialKNNParams`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from datastore.params import PartialKNNParams
from t2m.cli.checks import UsageError, usage_errors, with_flags
from t2m.inputs import FORMATS
from t2m.options import DecodingOptions, SmilesConstraints
from t2m.tasks import MOL2TEXT, TASKS
from t2m.translate_job import TranslateJob, TranslationInterrupted, report_flags, run_translation

# the fields of t2m's option objects that the parser stores under other names (t2m.cli.checks.flag_names)
FIELD_FLAGS = {"num_return_sequences": "--n-best", "do_sample=True": "--sample", "syntax=False": "--no-smiles-syntax",
               "valence=False": "--no-smiles-valence", "canonicalize=True": "--canonical", "k": "--knn-k",
               "lambda_": "--knn-lambda", "temperature": "--knn-temperature", "pairs": "--knn-pairs"}


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
                             "threads; t2m.decoding.pool); 1: this process")
    parser.add_argument("--no-valid-smiles", dest="valid_smiles", action="store_false",
                        help="text2mol: do not rerank beams to the best one RDKit parses")
    parser.add_argument("--no-smiles-syntax", dest="smiles_syntax", action="store_false",
                        help="text2mol: do not constrain decoding to syntactically possible SMILES (balanced "
                             "branches, ring bonds and brackets; see t2m.decoding.smiles_grammar)")
    parser.add_argument("--no-smiles-valence", dest="smiles_valence", action="store_false",
                        help="text2mol: keep the syntax constraint but do not check valences and ring bonds "
                             "(see t2m.decoding.smiles_valence)")
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
    parser.add_argument("--system", choices=("model", "retrieval"),
                        help="model: the T5 translates (reading its neighbours when trained with them); retrieval: "
                             "no model, the target of the database pair the checkpoint's neighbour ranker puts first "
                             "among the nearest (t2m.neighbours.ranker; the nearest pair without one); --n-best gives "
                             "the next pairs' targets, the decoding and --knn options do not apply. Default: the "
                             "checkpoint's choice for the task (t2m.json \"system\", the best system t2m bench "
                             "measured for the shipped model; model for checkpoints without one, and with --knn)")
    parser.add_argument("--show-neighbours", action="store_true",
                        help="add each input's neighbours shown to the model (similarity and target) to the output: "
                             "two more TSV columns, or a tab-separated column in text output (JSONL always has them)")


# ------------------------------------------------------------------------------------------ checks


def check_options(args):
    """The :class:`t2m.translate_job.TranslateJob` of the command line's arguments, its options checked before
    anything is loaded (UsageError, exit 2): what the command line alone can get wrong here, the values'
    ranges by the option objects."""
    if args.texts and args.input:
        raise UsageError("give either TEXT arguments or --input FILE, not both")
    if not args.texts and not args.input:
        raise UsageError("nothing to translate: give TEXT arguments or --input FILE")
    if args.format != "auto" and not args.input:
        raise UsageError(f"--format {args.format} reads an --input file; leave it out for TEXT arguments")
    if args.mbr != "none" and args.task != MOL2TEXT:
        raise UsageError(f"--mbr {args.mbr} chooses among captions (mol2text); leave it out for {args.task}")
    # --system against --knn and --n-best: t2m.translate_job.resolve_system (the default system is the checkpoint's)
    with usage_errors(args):
        job = translate_job(args)
    if args.database is not None and not Path(args.database).is_file():
        raise UsageError(f"--database {args.database}: no such file; give a ChEBI-20-format TSV (or JSONL) of "
                         "training pairs")
    return job


def translate_job(args):
    """The :class:`t2m.translate_job.TranslateJob` of the command line's arguments."""
    decoding = DecodingOptions(num_beams=args.num_beams, num_return_sequences=args.n_best, batch_size=args.batch_size,
                               max_new_tokens=args.max_new_tokens, do_sample=args.sample, top_p=args.top_p,
                               top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                               no_repeat_ngram_size=args.no_repeat_ngram_size, length_penalty=args.length_penalty,
                               mbr=args.mbr)
    constraints = SmilesConstraints(valid_smiles=args.valid_smiles, syntax=args.smiles_syntax,
                                    valence=args.smiles_valence, canonicalize=args.canonical)
    knn_params = PartialKNNParams(k=args.knn_k, lambda_=args.knn_lambda, temperature=args.knn_temperature,
                                  pairs=args.knn_pairs)
    return TranslateJob(task=args.task, texts=list(args.texts), input=args.input, format=args.format,
                        output=args.output, overwrite=args.overwrite, resume=args.resume, model=args.model,
                        decoding=decoding, constraints=constraints, knn=args.knn, knn_params=knn_params,
                        jobs=args.jobs, prompt_style=args.prompt_style, allow_pickle=args.allow_pickle,
                        database=args.database, show_neighbours=args.show_neighbours, system=args.system)


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    job = check_options(args)
    try:
        done = run_translation(job)
    except TranslationInterrupted as stop:
        print(with_flags(stop.message, args.flag_names), file=sys.stderr)
        return 130
    if job.output is None:
        sys.stdout.write(done.text)
        sys.stdout.flush()
    report_flags(done.inputs, done.results)
    return 0
