"""t2m.fast_decoding against transformers' own generate (no cache tricks): wall time and equal outputs.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_fast_decoding.py [--rows 32] [--beams 1 5]

Decodes the first ``--rows`` ChEBI-20 test rows of each task with the shipped model, both ways, and
prints seconds, inputs/s and how many rows got the same candidates.
"""
import argparse
import contextlib
import json
import time

import torch

import t2m.generate as g
from t2m.data import load_chebi20_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = load_chebi20_records(None).test[: args.rows]
    translator = g.Translator.from_pretrained()
    fast = g.fast_decoding
    for beams in args.beams:
        for task, key in (("text2mol", "description"), ("mol2text", "smiles")):
            sources = [r[key] for r in records]
            kwargs = dict(task=task, num_beams=beams, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
            seconds = {}
            outputs = {}
            for name in ("t2m", "transformers", "t2m_again"):
                g.fast_decoding = fast if name != "transformers" else (lambda m, b: contextlib.nullcontext({}))
                start = time.perf_counter()
                outputs[name] = translator.translate(sources, **kwargs)
                seconds[name] = time.perf_counter() - start
            g.fast_decoding = fast
            ours = (seconds["t2m"] + seconds["t2m_again"]) / 2
            same = sum(a.candidates == b.candidates for a, b in zip(outputs["t2m"], outputs["transformers"]))
            print(json.dumps({"task": task, "beams": beams, "rows": len(sources), "t2m_s": round(ours, 2),
                              "transformers_s": round(seconds["transformers"], 2),
                              "speedup": round(seconds["transformers"] / ours, 2),
                              "t2m_inputs_per_s": round(len(sources) / ours, 2),
                              "same_candidates": f"{same}/{len(sources)}"}), flush=True)


if __name__ == "__main__":
    main()
