"""t2m.decoding.fast against transformers' own generate: wall time and equal outputs.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_fast_decoding.py [--rows 32] [--beams 1 5]

Decodes the first ``--rows`` ChEBI-20 test rows of each task with the shipped model three ways --
``transformers`` (its own cache and attention, one round to ``--max-new-tokens``), ``one_round`` (t2m's
cache and attention, one round) and ``t2m`` (also in length rounds, as Translator decodes by default) --
and prints seconds, inputs/s and how many rows got the same candidates as ``transformers``.
"""
import argparse
import contextlib
import json
import time

import torch

import t2m.decoding.fast as fd
import t2m.decoding.translator as g
from t2m.data import load_chebi20_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--first-round-tokens", type=int, default=None,
                        help="first round of t2m (default: t2m.options.default_first_round)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = load_chebi20_records(None).test[: args.rows]
    translator = g.Translator.from_pretrained()
    fast = fd.fast_decoding
    for beams in args.beams:
        for task, key in (("text2mol", "description"), ("mol2text", "smiles")):
            sources = [r[key] for r in records]
            kwargs = dict(task=task, num_beams=beams, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
            row = {"task": task, "beams": beams, "rows": len(sources)}
            outputs = {}
            for name, own, rounds in (("transformers", True, 0), ("one_round", False, 0),
                                      ("t2m", False, args.first_round_tokens)):
                fd.fast_decoding = (lambda m, b: contextlib.nullcontext({})) if own else fast
                start = time.perf_counter()
                outputs[name] = translator.translate(sources, first_round_tokens=rounds, **kwargs)
                row[f"{name}_s"] = round(time.perf_counter() - start, 2)
                row[f"{name}_inputs_per_s"] = round(len(sources) / row[f"{name}_s"], 3)
                same = sum(a.candidates == b.candidates for a, b in zip(outputs[name], outputs["transformers"]))
                row[f"{name}_same_candidates"] = f"{same}/{len(sources)}"
            fd.fast_decoding = fast
            row["speedup"] = round(row["transformers_s"] / row["t2m_s"], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
