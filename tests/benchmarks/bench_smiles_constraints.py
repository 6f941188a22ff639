"""text2mol with and without the SMILES constraints: validity, Morgan FTS and decoding time on the dev slice.

    python tests/benchmarks/bench_smiles_constraints.py [--rows 300] [--beams 5] [--jobs 2] [--model DIR]

Decodes the benchmark setting's dev slice (ChEBI-20 validation rows with the smallest sha256(CID); the
model never trained on them) with the shipped model, or ``--model``, three ways -- ``off`` (no
constraint), ``syntax`` (``t2m.decoding.smiles_grammar`` with its length budget, ``smiles_valence=False``) and
``syntax+valence`` (the default) -- each with valid-SMILES reranking and the checkpoint's n-gram blocking,
in ``--jobs`` worker processes, and prints one JSON line per setting: validity, Morgan FTS over the valid
rows (as MolT5's evaluation averages it) and over all rows (an unparsable output counts 0), seconds.
"""
import argparse
import json
import time

from t2m.data import load_chebi20_records
from t2m.decoding.pool import DecodePool
from t2m.model.checkpoint import default_model_dir
from t2m.options import DecodingOptions, SmilesConstraints

SETTINGS = {"off": SmilesConstraints(syntax=False), "syntax": SmilesConstraints(valence=False),
            "syntax+valence": SmilesConstraints()}


def morgan_similarities(outputs: list[str], references: list[str]) -> list[float | None]:
    """Morgan FTS per row as ``t2m eval`` computes it (MolT5's); None where RDKit cannot parse the output."""
    from rdkit import rdBase

    from evaluation.molecules import molecule_record, row_score

    with rdBase.BlockLogs():
        rows = [row_score(molecule_record(ref), molecule_record(out), not out) for ref, out in zip(references, outputs)]
    return [None if row.similarities is None else row.similarities[2] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    dev = load_chebi20_records(None, "benchmark").dev[: args.rows]
    sources, references = [r["description"] for r in dev], [r["smiles"] for r in dev]
    with DecodePool(args.model, jobs=args.jobs) as pool:
        for name in args.settings:
            started = time.perf_counter()
            result = pool.translate(sources, "text2mol", DecodingOptions(num_beams=args.beams), SETTINGS[name])
            seconds = time.perf_counter() - started
            sims = morgan_similarities([t.output for t in result.translations], references)
            valid = [s for s in sims if s is not None]
            print(json.dumps({"setting": name, "rows": len(sources), "beams": args.beams,
                              "validity": round(len(valid) / len(sims), 4),
                              "morgan_fts_valid_rows": round(sum(valid) / max(len(valid), 1), 4),
                              "morgan_fts_all_rows": round(sum(valid) / len(sims), 4),
                              "seconds": round(seconds, 1), "jobs": args.jobs}), flush=True)


if __name__ == "__main__":
    main()
