"""The trainer's dev numbers are `t2m eval`'s: decode dev rows with the trainer's quick dev evaluation
(:func:`t2m.training.trainer.quick_dev_metrics` in its two steps, :func:`~t2m.training.trainer.quick_dev_outputs` -- greedy through
``Translator.decode`` -- and :func:`~t2m.training.trainer.quick_dev_scores`) and score the same outputs with
``t2m eval`` (a predictions file per task, the command run as a separate process); print both and exit 1
when a number differs.

    python tests/benchmarks/dev_metrics_as_eval.py --rows 100 --work /tmp/dev_as_eval

Model: the shipped one (``--model``: another checkpoint); rows: the first ``--rows`` of the dev slice of the
checkpoint's training setting, shown their neighbours as ``t2m translate`` shows them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "chebi20"
# the trainer's logged key -> (task, `t2m eval`'s metric)
COMPARED = {"dev_bleu4": ("mol2text", "bleu4"), "dev_exact": ("text2mol", "exact_match"),
            "dev_validity": ("text2mol", "validity")}


def dev_data(translator, rows: int):
    """A TrainingData of the first ``rows`` dev rows, with the neighbours the checkpoint's translations show."""
    from t2m.data import DEV_SIZE, load_chebi20_records
    from t2m.tasks import MOL2TEXT, TEXT2MOL
    from t2m.training.data import TrainingData

    described = translator.info.extra.get("training_data", {})
    splits = load_chebi20_records(DATA, described.get("setting", "benchmark"),
                                  dev_size=described.get("sizes", {}).get("dev", DEV_SIZE))
    dev = splits.dev[:rows]
    inputs = {TEXT2MOL: [r["description"] for r in dev], MOL2TEXT: [r["smiles"] for r in dev]}
    data = TrainingData(train=[], dev=dev)
    if translator.neighbour_format is not None:
        data.dev_neighbours = {task: translator.neighbours(texts, task) for task, texts in inputs.items()}
    for task, texts in inputs.items():  # what the trainer's quick evaluation reads is what translate reads
        assert [data.source(i, task, split="dev") for i in range(len(dev))] == translator.model_inputs(texts, task)
    return data


def t2m_eval(task: str, references: list[str], outputs: list[str], work: Path) -> dict[str, float]:
    """`t2m eval` (a separate process) on a JSONL predictions file of the rows; its metrics."""
    predictions, report = work / f"{task}.jsonl", work / f"{task}.eval.json"
    predictions.write_text("".join(json.dumps({"task": task, "reference": r, "output": o}) + "\n"
                                   for r, o in zip(references, outputs)), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "t2m", "eval", str(predictions), "--json", str(report), "--no-fcd"],
                   check=True, cwd=REPO)
    return json.loads(report.read_text())["metrics"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the predictions files")
    args = parser.parse_args(argv)
    from t2m.decoding.translator import Translator
    from t2m.training.trainer import quick_dev_outputs, quick_dev_scores

    args.work.mkdir(parents=True, exist_ok=True)
    translator = Translator.from_pretrained(args.model)
    data = dev_data(translator, args.rows)
    model, tokenizer, decoding = translator.model, translator.tokenizer, translator.info.decoding
    started = time.perf_counter()
    # quick_dev_metrics, in its two steps: the outputs (kept here for `t2m eval`), then their scores
    outputs = quick_dev_outputs(model, tokenizer, data, args.rows, 256, decoding)
    dev = quick_dev_scores(data, outputs)
    seconds = time.perf_counter() - started
    evaluated = {task: t2m_eval(task, refs, outs, args.work) for task, (refs, outs) in outputs.items()}
    (args.work / "outputs.json").write_text(json.dumps(outputs, indent=1) + "\n")
    same = True
    print(f"{args.rows} dev rows, {translator.info.path}; trainer's quick dev evaluation in {seconds:.0f} s")
    for key, (task, metric) in COMPARED.items():
        equal = dev[key] == evaluated[task][metric]
        same &= equal
        print(f"{key:<13} {dev[key]!r:<22} t2m eval {task} {metric:<12} {evaluated[task][metric]!r:<22} "
              f"{'equal' if equal else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
