"""Pair-restricted kNN-MT and MBR on the dev slice: one JSON line per setting.

    python tests/benchmarks/bench_knn_pairs.py --task mol2text --store STORE [--pairs 0 4] [--knn-lambda 0.6]
        [--temperature 0.0194] [--k 8] [--rows 300] [--beams 5] [--jobs 2] [--model DIR]

Decodes the benchmark setting's dev slice (ChEBI-20 validation rows with the smallest sha256(CID); the
model and the store never saw them) with the shipped model, or ``--model``, at beam ``--beams`` with all
beams returned: once with no retrieval and once per ``--pairs`` value (0: kNN over the whole store,
N: over each input's N nearest training pairs, ``t2m.neighbours.pairs``). For mol2text it scores the top beam
and the MBR choice among the beams (chrF, ``t2m.decoding.mbr``) with BLEU-4 / METEOR / ROUGE-L as ``t2m eval``;
for text2mol the reranked output's validity and Morgan FTS (over the valid rows, as MolT5, and over all
rows), the wall time and each worker's peak resident memory. Build a store with ``t2m datastore build
--model DIR --task T --setting benchmark --out STORE``.
"""
import argparse
import json
import time

from t2m.data import load_chebi20_records
from datastore.params import KNNParams
from t2m.decoding.pool import DecodePool
from t2m.options import DecodingOptions, RetrievalOptions
from t2m.decoding.mbr import mbr_index
from t2m.model.checkpoint import default_model_dir


def scores(task: str, references: list[str], translations: list) -> dict:
    if task == "mol2text":
        from evaluation.mol2text import evaluate_mol2text

        out = {}
        for name, outputs in (("top", [t.candidates[0] for t in translations]),
                              ("mbr_chrf", [t.candidates[mbr_index(t.candidates, "chrf")] for t in translations])):
            metrics = evaluate_mol2text(references, outputs).metrics
            out[name] = {key: round(metrics[key], 4) for key in ("bleu4", "meteor", "rougeL")}
        return out
    from bench_smiles_constraints import morgan_similarities

    sims = morgan_similarities([t.output for t in translations], references)
    valid = [s for s in sims if s is not None]
    return {"validity": round(len(valid) / len(sims), 4), "morgan_fts_valid_rows": round(sum(valid) / max(len(valid), 1), 4),
            "morgan_fts_all_rows": round(sum(valid) / len(sims), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=("text2mol", "mol2text"))
    parser.add_argument("--store", required=True)
    parser.add_argument("--pairs", type=int, nargs="+", default=[4])
    parser.add_argument("--knn-lambda", type=float, default=0.6)
    parser.add_argument("--temperature", type=float, default=None, help="default: the store's")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without retrieval")
    args = parser.parse_args()
    from datastore.store import Datastore

    temperature = args.temperature or Datastore.load(args.store).knn_params.temperature
    dev = load_chebi20_records(None, "benchmark").dev[: args.rows]
    source, target = ("description", "smiles") if args.task == "text2mol" else ("smiles", "description")
    sources, references = [r[source] for r in dev], [r[target] for r in dev]
    settings = [] if args.no_baseline else [("model", None)]
    settings += [(f"knn_pairs_{n}" if n else "knn_whole_store",
                  RetrievalOptions(args.store, KNNParams(args.k, args.knn_lambda, temperature, n))) for n in args.pairs]
    with DecodePool(args.model, jobs=args.jobs, stores=[args.store]) as pool:
        for name, knn in settings:
            started = time.perf_counter()
            result = pool.translate(sources, args.task, DecodingOptions(num_beams=args.beams,
                                                                        num_return_sequences=args.beams), retrieval=knn)
            seconds = time.perf_counter() - started
            print(json.dumps({"task": args.task, "setting": name, "rows": len(sources), "beams": args.beams,
                              "k": args.k if knn else None, "lambda": args.knn_lambda if knn else None,
                              "temperature": temperature if knn else None,
                              **scores(args.task, references, result.translations),
                              "seconds": round(seconds, 1), "jobs": args.jobs,
                              "worker_peak_rss_mb": sorted(result.worker_peak_rss_mb.values())}), flush=True)


if __name__ == "__main__":
    main()
