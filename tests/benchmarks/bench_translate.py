"""Translation speed of a checkpoint on this machine: molecules/s per task, greedy and beam 5.

    python tests/benchmarks/bench_translate.py [--model DIR] [--data DIR] [--rows 200]

Reads the first ``--rows`` rows of ChEBI-20 test.txt, translates them in both directions with the
settings ``t2m translate`` uses by default (batch 32, valid-SMILES reranking for text2mol), and prints
one line per (task, beams) with inputs/s and generated tokens/s. Training throughput is in the
training run's ``train_log.jsonl`` (``tokens_per_s``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=None, help="ChEBI-20 folder")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from t2m.data import read_tsv_records, resolve_chebi20_dir
    from t2m.decoding.translator import Translator
    from t2m.options import DecodingOptions

    rows = read_tsv_records(resolve_chebi20_dir(args.data) / "test.txt")[: args.rows]
    translator = Translator.from_pretrained(args.model)
    results = []
    for task in ("text2mol", "mol2text"):
        sources = [r["description"] if task == "text2mol" else r["smiles"] for r in rows]
        for beams in [int(b) for b in args.beams.split(",")]:
            start = time.perf_counter()
            out = translator.translate(sources, task, DecodingOptions(num_beams=beams))
            seconds = time.perf_counter() - start
            tokens = sum(len(translator.tokenizer(o.output, add_special_tokens=False)["input_ids"]) + 1 for o in out)
            record = {"task": task, "beams": beams, "rows": len(rows), "seconds": round(seconds, 2),
                      "molecules_per_s": round(len(rows) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                      "threads": torch.get_num_threads()}
            results.append(record)
            print(json.dumps(record), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
