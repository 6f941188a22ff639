"""Score a predictions file: read it, pick the task, run the task's metrics."""

from __future__ import annotations

from pathlib import Path

from evaluation.predictions import TASKS, read_predictions
from evaluation.result import EvalResult


def evaluate_file(
    path: str | Path,
    task: str | None = None,
    *,
    text_tokenizer=None,
    strict: bool = False,
    fcd: bool = True,
    sacrebleu: bool = True,
    skip_bad_rows: bool = False,
    use_cache: bool = True,
    workers: int | None = None,
) -> EvalResult:
    """Score a MolT5 TSV or JSONL predictions file (see :mod:`evaluation.predictions`).

    ``task`` defaults to what the file says (TSV header ``description`` -> text2mol, ``SMILES`` -> mol2text;
    JSONL ``task`` field); raises ValueError if neither says. Skipped bad rows (``skip_bad_rows``) are
    listed in the result's notes.
    """
    preds = read_predictions(path, skip_bad_rows=skip_bad_rows)
    if task is None:
        task = preds.task
        if task is None:
            raise ValueError(f"{path}: cannot tell the task from the file; pass --task {{{','.join(TASKS)}}}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if len(preds) == 0:
        raise ValueError(f"{path}: no rows to score (a header alone{', every row skipped' if preds.skipped else ''}); "
                         "give a file with predictions")
    if task == "text2mol":
        from evaluation.text2mol import evaluate_text2mol

        result = evaluate_text2mol(
            preds.references,
            preds.outputs,
            strict=strict,
            fcd=fcd,
            sacrebleu=sacrebleu,
            workers=workers,
            use_cache=use_cache,
        )
    else:
        from evaluation.mol2text import evaluate_mol2text

        result = evaluate_mol2text(
            preds.references,
            preds.outputs,
            tokenizer=text_tokenizer,
            strict=strict,
            sacrebleu=sacrebleu,
            workers=workers,
            use_cache=use_cache,
        )
    if preds.skipped:
        result.notes.append(f"{len(preds.skipped)} malformed row(s) skipped: " + "; ".join(preds.skipped[:5]))
    if preds.task is not None and preds.task != task:
        result.notes.append(f"scored as {task}, but the file looks like {preds.task}")
    return result
