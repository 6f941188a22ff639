"""``t2m train`` against a bare training step of the same T5, in one process: tokens/s and peak memory.

    python tests/benchmarks/bench_train.py OUT.json [--recipe t2m/recipes/retrieval_model.json]
        [--data ../shared/data] [--steps 10] [--bare-steps 5] [--rounds 2] [--precisions bf16 fp32]
        [--threads N] [--profile PROFILE.txt]

Per round and precision, three phases run one after the other in this process (so a busy neighbour on a
shared machine slows all three alike; compare within a round):

- ``trainer``: ``t2m.train.train`` with the recipe's options (``--steps`` steps, a fresh ``out_dir`` under
  ``--work``, log every step, no evaluation or checkpoint inside the timed steps) on the real ChEBI-20 data
  path: epoch examples, neighbours, SMILES augmentation, batching, collation, accelerate, logging. Its speed
  is read from its own log (``tokens`` and ``elapsed_s`` per step), from the end of step 1 to the last step.
- ``bare_fixed``: forward + backward + gradient clipping + AdamW of the recipe's T5 (its config, as a plain
  ``T5ForConditionalGeneration``: without the copy head) on one fixed batch of random tokens, no padding
  (``--fixed 24x128x96``: batch x source x target), autocast as the trainer does: what this machine does
  with this T5, the yardstick.
- ``bare_real``: the bare step of the trainer's own model (the copy head where the recipe has one) over the batches the trainer's timed steps took (its first ``--steps``
  batches of epoch 0, collated as the trainer collates them: its padding, its shapes; the first one is the
  warm-up, as the trainer's first step is not timed), then one step on the epoch's largest batch (by padded
  tokens), which a short trainer run may not meet, for the peak memory.

Tokens are counted the same way everywhere: non-pad source tokens + non-pad target tokens. Before each
phase the peak resident memory (``VmHWM``) is reset through ``/proc/self/clear_refs`` where Linux allows it,
so each phase reports its own peak (with the resident memory it started from). The load average is
recorded before and after every phase; CPU flags (avx512_bf16, amx) and library versions are in the JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")


def cpu_info() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"model": model, "cpus": os.cpu_count(), "flags": {f: f in flags for f in FLAGS}}


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current resident memory (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class Phase:
    """Times one phase: load average and memory before and after, peak memory during."""

    def __init__(self, name: str, precision: str, round_: int):
        self.record = {"phase": name, "precision": precision, "round": round_}

    def __enter__(self):
        from t2m.memory import current_rss_mb

        gc.collect()
        self.record["peak_reset"] = reset_peak()
        self.record["rss_before_mb"] = current_rss_mb()
        self.record["load_before"] = load()
        return self.record

    def __exit__(self, *exc):
        from t2m.memory import peak_rss_mb

        self.record["peak_rss_mb"] = peak_rss_mb()
        self.record["load_after"] = load()
        return False


def rate(tokens: list[int], seconds: list[float]) -> dict:
    per_step = [t / s for t, s in zip(tokens, seconds) if s > 0]
    return {"steps": len(tokens), "tokens": sum(tokens), "seconds": round(sum(seconds), 3),
            "tokens_per_s": round(sum(tokens) / max(sum(seconds), 1e-9), 1),
            "median_step_tokens_per_s": round(statistics.median(per_step), 1) if per_step else None}


def trainer_config(args, precision: str, out_dir: Path):
    from t2m.train import TrainConfig

    overrides = dict(out_dir=str(out_dir), data_dir=args.data, max_steps=args.steps, max_minutes=None,
                     bf16=precision == "bf16", log_every=1, eval_every=10**9, save_every=10**9, threads=args.threads)
    config = TrainConfig.load(args.recipe, **overrides)
    if config.init_from and not Path(config.init_from).is_dir():
        config.init_from = args.init_from  # stage 2 of a recipe without its stage 1 run here: the shipped model
    if config.tokenizer is None and config.init_from is None:
        config.tokenizer = args.tokenizer  # the same vocabulary size; saves training a tokenizer
    return config


def reset_accelerate() -> None:
    """accelerate keeps one state per process, mixed precision included: forget it between trainer phases."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run_trainer(args, precision: str, out_dir: Path, profile: Path | None) -> dict:
    from t2m.train import train

    reset_accelerate()
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    cache = Path(args.work) / "neighbours.json"
    if cache.is_file():
        shutil.copy(cache, out_dir / "neighbours.json")
    config = trainer_config(args, precision, out_dir)
    start = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    train(config, resume=False)
    if profiler:
        profiler.disable()
        with profile.open("w") as handle:
            pstats.Stats(profiler, stream=handle).sort_stats("cumulative").print_stats(60)
            pstats.Stats(profiler, stream=handle).sort_stats("tottime").print_stats(40)
    wall = time.perf_counter() - start
    if (out_dir / "neighbours.json").is_file() and not cache.is_file():
        shutil.copy(out_dir / "neighbours.json", cache)
    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    tokens = [b["tokens"] - a["tokens"] for a, b in zip(steps, steps[1:])]
    seconds = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(steps, steps[1:])]
    result = rate(tokens, seconds)
    result.update(wall_s=round(wall, 1), startup_and_save_s=round(wall - result["seconds"], 1),
                  first_step_s=round(steps[0]["elapsed_s"], 2), losses=[round(r["loss"], 4) for r in steps],
                  log_peak_rss_mb=max(r["peak_rss_mb"] for r in steps))
    shutil.rmtree(out_dir, ignore_errors=True)
    return result


class Bare:
    """The bare step: the trainer's model (config and class) and optimizer, no trainer around it."""

    def __init__(self, args, precision: str):
        import torch

        from t2m.modeling import make_config, model_class
        from t2m.train import load_training_data, optimizer_for, prepare_tokenizer

        self.config = config = trainer_config(args, precision, Path(args.work) / "bare")
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        cache = Path(args.work) / "neighbours.json"
        if cache.is_file():
            shutil.copy(cache, Path(config.out_dir) / "neighbours.json")
        self.data = load_training_data(config, Path(config.out_dir))
        self.tokenizer = prepare_tokenizer(config, self.data, Path(config.out_dir))
        torch.manual_seed(config.seed)
        if config.init_from:
            self.model = model_class(config.init_from).from_pretrained(config.init_from)
        else:
            model_config = make_config(config.preset, config.model_config, vocab_size=len(self.tokenizer),
                                       dropout_rate=config.dropout)
            self.model = model_class(model_config)(model_config)
        if config.copy_head and not getattr(self.model.config, "copy_head", False):
            from t2m.copy_model import with_copy_head

            self.model = with_copy_head(self.model)
        self.model.train()
        self.optimizer = optimizer_for(self.model, config)
        self.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def plain(self) -> None:
        """Switch to the plain T5 of the same config (no copy head), fresh weights and optimizer."""
        import copy

        import torch
        from transformers import T5ForConditionalGeneration

        from t2m.train import optimizer_for

        config = copy.deepcopy(self.model.config)
        config.copy_head = False
        torch.manual_seed(self.config.seed)
        self.model = T5ForConditionalGeneration(config)
        self.model.train()
        self.optimizer = optimizer_for(self.model, self.config)

    def step(self, batch: dict) -> int:
        import torch

        with self.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())

    def timed(self, batches: list[dict]) -> dict:
        tokens, seconds = [], []
        for batch in batches:
            start = time.perf_counter()
            tokens.append(self.step(batch))
            seconds.append(time.perf_counter() - start)
        return rate(tokens, seconds)

    def fixed_batch(self, shape: tuple[int, int, int]) -> dict:
        import torch

        b, s, t = shape
        generator = torch.Generator().manual_seed(0)
        vocab = self.model.config.vocab_size
        input_ids = torch.randint(3, vocab, (b, s), generator=generator)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "labels": torch.randint(3, vocab, (b, t), generator=generator)}

    def real_batches(self, n: int) -> tuple[list[dict], dict]:
        """The trainer's first ``n`` batches of epoch 0 and the epoch's largest one (by padded tokens)."""
        from t2m.train import collate_pairs, epoch_batches, epoch_examples

        batches = epoch_batches(self.tokenizer, epoch_examples(self.data, self.config, 0), self.config, 0)
        pad = self.tokenizer.pad_token_id
        collated = [collate_pairs(b, pad, self.config) for b in batches[:n]]
        largest = max(batches, key=lambda b: len(b) * (max(len(p[0]) for p in b) + max(len(p[1]) for p in b)))
        return collated, collate_pairs(largest, pad, self.config)


def summarise(records: list[dict], precisions: list[str]) -> dict:
    out = {}
    for precision in precisions:
        mine = [r for r in records if r["precision"] == precision]
        by = {name: [r for r in mine if r["phase"] == name] for name in ("trainer", "bare_fixed", "bare_real")}
        row = {name: {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)} for name, rs in by.items() if rs}
        ratios = [t["tokens_per_s"] / b["tokens_per_s"] for t, b in zip(by["trainer"], by["bare_fixed"])]
        ratios_real = [t["tokens_per_s"] / b["tokens_per_s"] for t, b in zip(by["trainer"], by["bare_real"])]
        row["trainer_over_bare_fixed"] = round(statistics.median(ratios), 3) if ratios else None
        row["trainer_over_bare_real"] = round(statistics.median(ratios_real), 3) if ratios_real else None
        out[precision] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="results JSON")
    parser.add_argument("--recipe", default=str(REPO / "t2m/recipes/retrieval_model.json"))
    parser.add_argument("--data", default=os.environ.get("T2M_SHARED_DATA"),
                        help="ChEBI-20 folder (default: as t2m finds it: $T2M_SHARED_DATA or ../shared/data)")
    parser.add_argument("--init-from", default=str(REPO / "t2m/default_model"),
                        help="checkpoint for a recipe whose init_from is not there (default: the shipped model)")
    parser.add_argument("--tokenizer", default=str(REPO / "t2m/default_model"),
                        help="tokenizer for a recipe that would train one (default: the shipped model's)")
    parser.add_argument("--steps", type=int, default=10, help="trainer steps per round (the first is not timed)")
    parser.add_argument("--bare-steps", type=int, default=5, help="bare steps on the fixed batch per round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--fixed", default="24x128x96", help="fixed bare batch: batch x source x target tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--work", default="/tmp/t2m_bench_train", help="scratch folder (runs, neighbour cache)")
    parser.add_argument("--profile", type=Path, help="cProfile the first trainer phase into this text file")
    args = parser.parse_args()

    import torch

    from t2m.train import native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    fixed = tuple(int(x) for x in args.fixed.split("x"))
    result = {"cpu": cpu_info(), "versions": versions(), "native_bf16": native_bf16(),
              "threads": torch.get_num_threads(), "recipe": args.recipe, "fixed_batch": args.fixed,
              "steps": args.steps, "bare_steps": args.bare_steps, "load_start": load(), "records": []}
    print(json.dumps({k: result[k] for k in ("cpu", "versions", "native_bf16", "threads")}), flush=True)
    for round_ in range(args.rounds):
        for precision in args.precisions:
            with Phase("trainer", precision, round_) as record:
                profile = args.profile if (round_ == 0 and precision == args.precisions[0]) else None
                record.update(run_trainer(args, precision, Path(args.work) / f"run-{precision}-{round_}", profile))
            result["records"].append(record)
            print(json.dumps(record), flush=True)
            bare = Bare(args, precision)
            batches, largest = bare.real_batches(args.steps)
            with Phase("bare_real", precision, round_) as record:
                bare.step(batches[0])  # warm-up
                record.update(bare.timed(batches[1:]))
                start = time.perf_counter()
                record["largest_batch"] = {"shape": list(largest["input_ids"].shape) + [largest["labels"].shape[1]],
                                           "tokens": bare.step(largest), "seconds": round(time.perf_counter() - start, 2)}
            result["records"].append(record)
            print(json.dumps(record), flush=True)
            bare.plain()
            with Phase("bare_fixed", precision, round_) as record:
                batch = bare.fixed_batch(fixed)
                bare.step(batch)  # warm-up
                record.update(bare.timed([batch] * args.bare_steps))
            result["records"].append(record)
            print(json.dumps(record), flush=True)
            del bare, batches, largest
    result["load_end"] = load()
    result["summary"] = summarise(result["records"], args.precisions)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
