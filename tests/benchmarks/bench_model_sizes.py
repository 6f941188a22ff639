"""MolT5-small/base/large-shaped T5s through ``t2m datastore build`` and ``t2m translate --knn`` (issue 30,
item 7): peak memory and time per size, on this machine.

    OMP_NUM_THREADS=2 python tests/benchmarks/bench_model_sizes.py --sizes small,base,large \
        [--pairs 50] [--rows 50] [--max-new-tokens 32] [--batch-size 8] [--work /tmp/model-sizes] \
        [--json docs/model_sizes.json] [--doc docs/datastore_scale.md]

Each model has random weights and the configuration of ``google/t5-v1_1-{small,base,large}`` (MolT5's
starting points: gated-GELU feed-forward, d_kv 64), built in code, nothing downloaded. transformers 5 ties
T5's LM head to the embedding whatever the config says (``tie_word_embeddings=False`` only turns off the
output rescaling), so the models have 77 / 248 / 783M parameters less one 32k x d matrix. The tokenizer is
a BPE (Metaspace pieces, :func:`datastore.testing.train_tokenizer`) trained here on ChEBI-20's train
captions and SMILES to ``--vocab`` pieces (MolT5's T5 vocabulary has 32,128). The checkpoint folder is named ``molt5-<size>-random`` so t2m reads it
as a MolT5 checkpoint (bare inputs, no prompts). Per size, each step is its own process, timed, with its
peak resident memory (``ru_maxrss`` of that process):
- ``make``: build the random model and ``save_pretrained`` it (float32 safetensors);
- ``build``: ``t2m datastore build --task mol2text`` over ``--pairs`` ChEBI-20 train pairs;
- ``translate``: ``t2m translate --task mol2text`` of ``--rows`` ChEBI-20 test rows, greedy, with the store
  (``--knn STORE --knn-pairs 0``: the store's FAISS index) and without it (the model alone). The random
  LM head's rows of the special tokens are zeroed: a random T5 without output rescaling puts nearly all
  its mass on one token (logits of standard deviation ~sqrt(d)), which was often end-of-sequence or pad,
  so rows ended at once; now every row runs ``--max-new-tokens`` steps (retrieval, at weight 0.3 against
  such a peaked model, does not change the greedy pick) and the runs compare. The table also counts the
  output's tokens (re-tokenized).
With ``--doc`` the table is written into that markdown file between ``<!-- model-sizes -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# google/t5-v1_1-{small,base,large} (MolT5-small/base/large were fine-tuned from these): T5Config fields
SIZES = {
    "tiny": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 2, "d_kv": 32},  # for checking the script
    "small": {"d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "d_kv": 64},
    "base": {"d_model": 768, "d_ff": 2048, "num_layers": 12, "num_heads": 12, "d_kv": 64},
    "large": {"d_model": 1024, "d_ff": 2816, "num_layers": 24, "num_heads": 16, "d_kv": 64},
}
START, END = "<!-- model-sizes -->", "<!-- /model-sizes -->"


def make_model(size: str, tokenizer_dir: str, out: str, seed: int = 0) -> dict[str, Any]:
    """Save a random T5 of ``size``'s configuration with the tokenizer in ``tokenizer_dir`` into ``out``."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = SIZES[size]
    config = T5Config(vocab_size=len(tokenizer), num_decoder_layers=shape["num_layers"], **shape,
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, layer_norm_epsilon=1e-6)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the (tied) LM head's rows of the special tokens: logit 0, never the greedy pick,
        specials = sorted({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id})
        model.get_output_embeddings().weight[specials] = 0.0  # so every row decodes --max-new-tokens steps
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer), **shape}


def make_tokenizer(data: Path, out: Path, vocab: int) -> int:
    from datastore.testing import read_tsv_rows, train_tokenizer

    rows = read_tsv_rows(data / "train.txt")
    tokenizer = train_tokenizer([r["SMILES"] for r in rows] + [r["description"] for r in rows], vocab)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(out))
    return len(tokenizer)


def run(command: list[str], log: Path) -> dict[str, Any]:
    """Run ``command`` (stdout and stderr to ``log``); its seconds and peak resident memory (MB)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); see {log}:\n" + log.read_text()[-3000:])
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def write_rows(source: Path, out: Path, count: int) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:count + 1]), encoding="utf-8")


def bench_size(size: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    python = sys.executable
    model_dir = work / f"molt5-{size}-random"
    result: dict[str, Any] = {"size": size}
    made = run([python, __file__, "--make", size, "--work", str(work)], work / f"{size}-make.log")
    result.update(json.loads((model_dir / "bench_make.json").read_text()))
    result["make"] = made
    result["checkpoint_mb"] = round(sum(f.stat().st_size for f in model_dir.iterdir()) / 2 ** 20, 1)
    store = work / f"store-{size}"
    t2m = [python, "-m", "t2m"]
    result["build"] = run(t2m + ["datastore", "build", "--model", str(model_dir), "--data", str(work / "pairs.tsv"),
                                 "--task", "mol2text", "--out", str(store), "--overwrite", "--no-resume",
                                 "--batch-size", str(args.batch_size)], work / f"{size}-build.log")
    meta = json.loads((store / "datastore.json").read_text())
    result["store"] = {"entries": meta["count"], "dim": meta["dim"], "factory": meta["index"]["factory"],
                       "compute_seconds": meta["build"]["compute_seconds"],
                       "tokens_per_second": meta["build"].get("tokens_per_second"),
                       "index_seconds": meta["index"].get("build_seconds")}
    translate = t2m + ["translate", "--model", str(model_dir), "--task", "mol2text", "--input", str(work / "rows.tsv"),
                       "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
                       "--overwrite", "--no-resume"]
    result["translate_knn"] = run(translate + ["--knn", str(store), "--knn-pairs", "0", "--output",
                                               str(work / f"{size}-knn.tsv")], work / f"{size}-knn.log")
    result["translate_model"] = run(translate + ["--output", str(work / f"{size}-model.tsv")],
                                    work / f"{size}-model.log")
    result.update(generated_tokens(work, size))
    if not args.keep:
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    return result


def generated_tokens(work: Path, size: str) -> dict[str, Any]:
    """Rows written and tokens generated (the output column, re-tokenized) by the kNN and the model-alone
    translations of ``size``: random weights stop only where retrieval puts an end-of-sequence token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    found: dict[str, Any] = {}
    for run_name in ("knn", "model"):
        rows = (work / f"{size}-{run_name}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        outputs = [row.split("\t")[-1] for row in rows]
        found[f"rows_{run_name}"] = len(rows)
        found[f"tokens_{run_name}"] = sum(len(ids) for ids in tokenizer(outputs, add_special_tokens=False)["input_ids"])
    return found


def table(results: list[dict[str, Any]], args: dict[str, Any], machine: dict[str, Any]) -> str:
    lines = [START, "",
             f"`python tests/benchmarks/bench_model_sizes.py --sizes {args['sizes']} --pairs {args['pairs']} "
             f"--rows {args['rows']} --max-new-tokens {args['max_new_tokens']} --batch-size {args['batch_size']}` "
             f"({machine['cpu']}, {machine['cpus']} cores shared with a training run and other jobs, "
             f"torch {machine['torch']}, {machine['threads']} threads). Store: mol2text over {args['pairs']} ChEBI-20 "
             f"train pairs; translate: {args['rows']} test rows, greedy, {args['max_new_tokens']} new tokens each "
             f"(the random LM head never picks a special token), batch "
             f"{args['batch_size']}. Each step is its own process (start-up included); peak RSS is that process's.",
             "",
             "| size | parameters | d (keys) | checkpoint MB | make s, peak MB | store entries, index | build s "
             "| build peak MB | translate + kNN s | output tokens | peak MB | model alone s | output tokens | peak MB |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        knn, alone = r["translate_knn"], r["translate_model"]
        lines.append(
            f"| {r['size']} | {r['parameters'] / 1e6:,.1f}M | {r['store']['dim']} | {r['checkpoint_mb']:,.0f} "
            f"| {r['make']['seconds']}, {r['make']['peak_rss_mb']:,.0f} "
            f"| {r['store']['entries']:,}, {r['store']['factory']} | {r['build']['seconds']} "
            f"| {r['build']['peak_rss_mb']:,.0f} | {knn['seconds']} | {r.get('tokens_knn', '–'):,} "
            f"| {knn['peak_rss_mb']:,.0f} | {alone['seconds']} | {r.get('tokens_model', '–'):,} "
            f"| {alone['peak_rss_mb']:,.0f} |")
    return "\n".join(lines + ["", END])


def write_doc(doc: Path, text: str) -> None:
    current = doc.read_text(encoding="utf-8")
    if START in current and END in current:
        head, rest = current.split(START, 1)
        current = head + text + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(current, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,base,large")
    parser.add_argument("--data", default="../shared/data/chebi20")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32_128)
    parser.add_argument("--work", default="/tmp/model-sizes")
    parser.add_argument("--json", default=None)
    parser.add_argument("--doc", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--table", action="store_true", help="write the table of --json's results (and the outputs "
                        "in --work) to --doc and stop")
    parser.add_argument("--make", default=None, help=argparse.SUPPRESS)  # the child process that builds a model
    args = parser.parse_args()
    work = Path(args.work)
    if args.table:
        saved = json.loads(Path(args.json).read_text())
        results = [{**r, **generated_tokens(work, r["size"])} for r in saved["results"]]
        text = table(results, saved["args"], saved["machine"])
        print(text)
        if args.doc:
            write_doc(Path(args.doc), text)
        return
    if args.make:
        out = work / f"molt5-{args.make}-random"
        info = make_model(args.make, str(work / "tokenizer"), str(out))
        (out / "bench_make.json").write_text(json.dumps(info))
        return
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    if not (work / "tokenizer" / "tokenizer.json").is_file():
        started = time.perf_counter()
        vocab = make_tokenizer(data, work / "tokenizer", args.vocab)
        print(f"tokenizer: {vocab:,} pieces in {time.perf_counter() - started:.0f} s", flush=True)
    write_rows(data / "train.txt", work / "pairs.tsv", args.pairs)
    write_rows(data / "test.txt", work / "rows.tsv", args.rows)
    import torch

    machine = {"cpu": _cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "threads": int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())),
               "python": platform.python_version()}
    results = []
    for size in args.sizes.split(","):
        result = bench_size(size, args, work)
        print(json.dumps(result), flush=True)
        results.append(result)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine, "args": vars(args), "results": results},
                                                  indent=1) + "\n")
    text = table(results, vars(args), machine)
    print(text)
    if args.doc:
        write_doc(Path(args.doc), text)


def _cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
