"""Same outputs before and after a refactor of the decoding code: translate fixed rows of both tasks with
the shipped model under a fixed list of settings (greedy, beam search, kNN over a small datastore with
the whole store and with pair restriction, MBR, sampling with a seed) and record, or compare against a
record, every output, candidate list, score and flag.

    python tests/benchmarks/same_outputs.py --record tests/benchmarks/same_outputs.json
    python tests/benchmarks/same_outputs.py --check tests/benchmarks/same_outputs.json

The datastores (one per task, built from the first ``--store-rows`` training pairs of the benchmark setting)
are built into ``--work`` when missing and reused; a build is deterministic, so a rebuilt store gives
the same outputs. Rows: the first ``--rows`` dev rows of ChEBI-20's benchmark setting. Exit status 1 when
``--check`` finds a difference (each one printed).

The script translates through the option objects of :mod:`t2m.options` (``DecodingOptions``,
``SmilesConstraints``, ``RetrievalOptions`` with a ``datastore.params.PartialKNNParams``: the kNN settings
given, the rest the store's); a record's keys are the settings' names, so one record made before a change
checks the code after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
DATA = REPO.parent / "shared" / "data" / "chebi20"
ONLY: set[str] = set()  # settings to run (--only); empty: all

# (name, decoding and constraint fields, kNN settings or None); kNN: the fields of datastore.params.PartialKNNParams
# (k, lambda_, temperature, pairs; None: the store's)
KNN = dict(k=8, lambda_=0.4, temperature=None, pairs=0)
CONFIGS = [
    ("greedy", dict(num_beams=1), None),
    ("beam3", dict(num_beams=3), None),
    ("beam3_nbest3", dict(num_beams=3, num_return_sequences=3), None),
    ("greedy_knn", dict(num_beams=1), KNN),
    ("beam3_knn", dict(num_beams=3), KNN),
    ("beam3_knn_store_defaults", dict(num_beams=3), dict(k=None, lambda_=None, temperature=None, pairs=None)),
    ("greedy_knn_pairs4", dict(num_beams=1), dict(KNN, pairs=4)),
    ("beam3_knn_pairs4", dict(num_beams=3), dict(KNN, pairs=4)),
    ("sample_seed0", dict(do_sample=True, num_return_sequences=2, top_p=0.9), None),
]
TEXT2MOL_ONLY = [
    ("beam3_no_rerank", dict(num_beams=3, valid_smiles=False), None),
    ("beam3_no_syntax_canonical", dict(num_beams=3, syntax=False, canonicalize=True), None),
    ("greedy_syntax_no_valence", dict(num_beams=1, valence=False), None),
]
MOL2TEXT_ONLY = [
    ("beam3_mbr_chrf", dict(num_beams=3, mbr="chrf"), None),
    ("beam3_no_repeat_off", dict(num_beams=3, no_repeat_ngram_size=0), None),
    ("beam3_length_repetition", dict(num_beams=3, length_penalty=0.6, repetition_penalty=1.2), None),
]


def training_file(work: Path, store_rows: int) -> Path:
    """The first ``store_rows`` training pairs of the benchmark setting, as a ChEBI-20 TSV."""
    from t2m.data import load_chebi20_records

    path = work / f"train{store_rows}.tsv"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        rows = load_chebi20_records(DATA, "benchmark").train[:store_rows]
        lines = ["CID\tSMILES\tdescription"] + [f"{r['cid']}\t{r['smiles']}\t{r['description']}" for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def store_for(task: str, work: Path, store_rows: int) -> Path:
    from t2m.knn.store import build_task_datastore

    out = work / f"store_{task}_{store_rows}"
    if not (out / "datastore.json").is_file():
        build_task_datastore(default_model(), task, out, training_file(work, store_rows),
                             index_factory="Flat", progress=False)
    return out


def default_model() -> Path:
    from t2m.model.checkpoint import default_model_dir

    return default_model_dir()


def translate(translator, sources, task: str, options: dict, knn: dict | None, store: Path | None) -> list:
    """``translator.translate`` of ``sources`` under one setting."""
    import dataclasses

    import torch

    from datastore.params import PartialKNNParams
    from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints

    torch.manual_seed(0)
    constraint_fields = {f.name for f in dataclasses.fields(SmilesConstraints)}
    decoding = DecodingOptions(**{k: v for k, v in options.items() if k not in constraint_fields})
    constraints = SmilesConstraints(**{k: v for k, v in options.items() if k in constraint_fields})
    retrieval = None if knn is None else RetrievalOptions(str(store), PartialKNNParams(**knn))
    return translator.translate(sources, task, decoding, constraints, retrieval)


def run(rows: int, work: Path, store_rows: int) -> dict:
    from t2m.data import load_chebi20_records
    from t2m.decoding.translator import Translator
    from t2m.tasks import MOL2TEXT, TEXT2MOL, source_and_target

    dev = load_chebi20_records(DATA, "benchmark").dev[:rows]
    translator = Translator.from_pretrained(None)
    record: dict = {"rows": rows, "store_rows": store_rows, "cids": [r["cid"] for r in dev], "outputs": {}}
    for task, extra in ((TEXT2MOL, TEXT2MOL_ONLY), (MOL2TEXT, MOL2TEXT_ONLY)):
        sources = [source_and_target(r["smiles"], r["description"], task)[0] for r in dev]
        store = store_for(task, work, store_rows)
        for name, options, knn in CONFIGS + extra:
            if ONLY and f"{task}/{name}" not in ONLY:
                continue
            results = translate(translator, sources, task, dict(options, max_new_tokens=128), knn, store)
            record["outputs"][f"{task}/{name}"] = [
                {"output": r.output, "candidates": r.candidates, "scores": r.scores, "flags": r.flags}
                for r in results]
            print(f"{task}/{name}: {results[0].output[:70]!r}", file=sys.stderr, flush=True)
    return record


def compare(old: dict, new: dict) -> list[str]:
    problems = []
    keys = set(new["outputs"]) if ONLY else set(old["outputs"]) | set(new["outputs"])
    for key in sorted(keys):
        a, b = old["outputs"].get(key), new["outputs"].get(key)
        if a is None or b is None:
            problems.append(f"{key}: only in the {'new' if a is None else 'old'} record")
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            for field in ("output", "candidates", "flags"):
                if x[field] != y[field]:
                    problems.append(f"{key} row {i}: {field} {x[field]!r} -> {y[field]!r}")
            xs, ys = x["scores"], y["scores"]
            if (xs is None) != (ys is None) or (xs and any(abs(p - q) > 1e-5 for p, q in zip(xs, ys))):
                problems.append(f"{key} row {i}: scores {xs} -> {ys}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the outputs here")
    mode.add_argument("--check", type=Path, help="compare the outputs with this record")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--store-rows", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("/tmp/t2m_same_outputs"))
    parser.add_argument("--only", default="", help="comma list of settings (task/name) to run (default: all)")
    args = parser.parse_args(argv)
    global ONLY
    ONLY = {name for name in args.only.split(",") if name}
    if args.check:
        old = json.loads(args.check.read_text())
        new = run(old["rows"], args.work, old["store_rows"])
        problems = compare(old, new)
        for p in problems:
            print(p)
        print(f"{len(new['outputs'])} settings x {old['rows']} rows: "
              + ("the same outputs" if not problems else f"{len(problems)} differences"))
        return 1 if problems else 0
    record = run(args.rows, args.work, args.store_rows)
    args.record.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.record}: {len(record['outputs'])} settings x {args.rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
