"""``t2m train`` against a bare training step of the same T5, in one process: tokens/s and peak memory.

    python tests/benchmarks/bench_train.py OUT.json [--recipe t2m/recipes/retrieval_model.json]
        [--data ../shared/data] [--steps 12] [--precisions bf16 fp32] [--threads N] [--profile FILE]

Speed (per precision): ``t2m.training.trainer.train`` runs the recipe (its options, ``--steps`` steps, a fresh
``out_dir`` under ``--work``, no evaluation or checkpoint inside the timed steps) on the real ChEBI-20 data
path: epoch examples, neighbours, SMILES augmentation, batching, collation, accelerate, logging. After each
of its optimizer steps, in the same process, and timed apart from it, run

- ``bare_fixed``: forward + backward + gradient clipping + AdamW of the recipe's T5 (its config as a plain
  ``T5ForConditionalGeneration``: no copy head) on one fixed batch of random tokens without padding
  (``--fixed 24x128x96``: batch x source x target), autocast as the trainer does: what this machine does
  with this T5, the yardstick;
- ``bare_fixed_fp32`` (or ``_bf16``): the same in the other precision, to tell under the same load which
  precision is this machine's native one;
- ``bare_real``: the same bare step of the trainer's own model (the copy head where the recipe has one) on
  the batch the trainer just took, collated in one piece with the recipe's padding (no micro-batches).

So they all see the same load from a busy neighbour (a shared 2-core machine), step by step. The
trainer's step time runs from the end of the previous bare steps to the start of the next ones: all of the
trainer's own work (data, batching, collation, step, logging) and nothing of the bare steps'. The first
step of each is the warm-up and not counted. Tokens are counted the same way everywhere: non-pad source
tokens + non-pad target tokens.

Memory (per precision, after the speed runs, each in a fresh process of this script, since freed memory
stays with a process): ``trainer`` is the peak resident memory of a trainer (``TrainingRun``: data,
tokenizer, model, optimizer) taking its first ``--memory-steps`` batches, then the epoch's largest batch
(by padded tokens, which a short run may not meet), then one evaluation (dev loss and quick dev metrics,
timed); ``bare`` is that of the bare step of the trainer's model on that largest batch. The load average,
CPU flags (avx512_bf16, amx) and versions are in the JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import copy
import gc
import inspect
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


def reset_accelerate() -> None:
    """accelerate keeps one state per process, mixed precision included: forget it between precisions."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def rate(tokens: list[int], seconds: list[float]) -> dict:
    per_step = [t / s for t, s in zip(tokens, seconds) if s > 0]
    return {"steps": len(tokens), "tokens": sum(tokens), "seconds": round(sum(seconds), 3),
            "tokens_per_s": round(sum(tokens) / max(sum(seconds), 1e-9), 1),
            "median_step_tokens_per_s": round(statistics.median(per_step), 1) if per_step else None}


def trainer_config(args, precision: str, out_dir: Path):
    from t2m.training.trainer import TrainConfig

    overrides = dict(out_dir=str(out_dir), data_dir=args.data, max_steps=args.steps, max_minutes=None,
                     bf16=precision == "bf16", log_every=1, eval_every=10**9, save_every=10**9, threads=args.threads)
    config = TrainConfig.load(args.recipe, **overrides)
    if config.init_from and not Path(config.init_from).is_dir():
        config.init_from = args.init_from  # stage 2 of a recipe without its stage 1 run here: the shipped model
    if config.tokenizer is None and config.init_from is None:
        config.tokenizer = args.tokenizer  # the same vocabulary size; saves training a tokenizer
    for option in args.set or []:
        key, value = option.split("=", 1)
        setattr(config, key, json.loads(value))
    return config


def fresh_out_dir(args, name: str) -> Path:
    out_dir = Path(args.work) / name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    cache = Path(args.work) / "neighbours.json"
    if cache.is_file():
        shutil.copy(cache, out_dir / "neighbours.json")
    return out_dir


def keep_neighbour_cache(args, out_dir: Path) -> None:
    cache = Path(args.work) / "neighbours.json"
    if (out_dir / "neighbours.json").is_file() and not cache.is_file():
        shutil.copy(out_dir / "neighbours.json", cache)


class Bare:
    """A bare step: a model and AdamW as the trainer sets them up, and nothing else."""

    def __init__(self, model, config, precision: str):
        import torch

        from t2m.training.trainer import optimizer_for

        self.model = model
        self.model.train()
        self.optimizer = optimizer_for(model, config)
        self.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(self, batch: dict) -> int:
        import torch

        with self.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())

    def timed(self, batch: dict) -> tuple[int, float]:
        start = time.perf_counter()
        tokens = self.step(batch)
        return tokens, time.perf_counter() - start


def trainer_model(config, tokenizer):
    """A fresh model as the trainer builds it (its class, config and initial weights)."""
    from t2m.training.trainer import build_model

    return build_model(config, tokenizer, None)


def plain_t5(model):
    """A plain T5 of ``model``'s config (no copy head), fresh weights."""
    from transformers import T5ForConditionalGeneration

    config = copy.deepcopy(model.config)
    config.copy_head = False
    return T5ForConditionalGeneration(config)


def fixed_batch(shape: tuple[int, int, int], vocab: int) -> dict:
    import torch

    b, s, t = shape
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, vocab, (b, s), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "labels": torch.randint(3, vocab, (b, t), generator=generator)}


def speed(args, precision: str, fixed: tuple[int, int, int], profile: Path | None) -> dict:
    """The trainer's steps, each followed by a bare step on the same batch and one on the fixed batch."""
    from t2m.training import trainer as train_module
    from t2m.training.trainer import TrainingRun, collate_pairs

    reset_accelerate()
    out_dir = fresh_out_dir(args, f"speed-{precision}")
    config = trainer_config(args, precision, out_dir)
    other = "fp32" if precision == "bf16" else "bf16"
    times = {"trainer": ([], []), "bare_real": ([], []), "bare_fixed": ([], []), f"bare_fixed_{other}": ([], [])}
    loads: list[float] = []
    hold = {}
    original_forward_backward, original_after_step = TrainingRun.forward_backward, TrainingRun.after_step

    def forward_backward(run, pairs):
        if "bare_real" not in hold:  # set up once the trainer has its data and tokenizer (not timed)
            hold["bare_real"] = Bare(trainer_model(run.config, run.tokenizer), run.config, precision)
            hold["bare_fixed"] = Bare(plain_t5(hold["bare_real"].model), run.config, precision)
            hold[f"bare_fixed_{other}"] = Bare(plain_t5(hold["bare_real"].model), run.config, other)
            hold["fixed"] = fixed_batch(fixed, hold["bare_real"].model.config.vocab_size)
            hold["pad"] = run.tokenizer.pad_token_id
            hold["tokens"], hold["since"] = run.state["tokens"], time.perf_counter()
        hold["pairs"] = pairs
        return original_forward_backward(run, pairs)

    def after_step(run):
        done = original_after_step(run)
        now = time.perf_counter()
        step_tokens = run.state["tokens"] - hold["tokens"]
        if run.state["step"] > 1:  # step 1: the warm-up of all three
            times["trainer"][0].append(step_tokens)
            times["trainer"][1].append(now - hold["since"])
        pairs = hold["pairs"]  # an older trainer took collated batches
        real = pairs if isinstance(pairs, dict) else collate_pairs(pairs, hold["pad"], run.config)
        for name, batch in (("bare_real", real), ("bare_fixed", hold["fixed"]), (f"bare_fixed_{other}", hold["fixed"])):
            tokens, seconds = hold[name].timed(batch)
            if run.state["step"] > 1:
                times[name][0].append(tokens)
                times[name][1].append(seconds)
        loads.append(os.getloadavg()[0])
        hold["tokens"], hold["since"] = run.state["tokens"], time.perf_counter()
        return done

    TrainingRun.forward_backward, TrainingRun.after_step = forward_backward, after_step
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    try:
        if profiler:
            profiler.enable()
        train_module.train(config, resume=False)
    finally:
        if profiler:
            profiler.disable()
        TrainingRun.forward_backward, TrainingRun.after_step = original_forward_backward, original_after_step
    wall = time.perf_counter() - start
    if profiler:
        with profile.open("w") as handle:
            pstats.Stats(profiler, stream=handle).sort_stats("cumulative").print_stats(70)
            pstats.Stats(profiler, stream=handle).sort_stats("tottime").print_stats(40)
    keep_neighbour_cache(args, out_dir)
    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    result = {name: rate(*pair) for name, pair in times.items()}
    trainer, real, fixed_ = (times[n] for n in ("trainer", "bare_real", "bare_fixed"))
    per_step = lambda a, b: [round((ta / sa) / (tb / sb), 3) for ta, sa, tb, sb in zip(*a, *b)]  # noqa: E731
    result["trainer_over_bare_fixed_per_step"] = per_step(trainer, fixed_)
    result["trainer_over_bare_real_per_step"] = per_step(trainer, real)
    result["load_per_step"] = [round(x, 2) for x in loads]
    result["losses"] = [round(r["loss"], 4) for r in log if "loss" in r]
    result["wall_s"] = round(wall, 1)
    shutil.rmtree(out_dir, ignore_errors=True)
    hold.clear()
    gc.collect()
    return result


class Peak:
    """Peak resident memory of a phase (VmHWM reset before it), with the memory it started from."""

    def __enter__(self):
        from t2m.process_memory import current_rss_mb

        gc.collect()
        self.record = {"peak_reset": reset_peak(), "rss_before_mb": current_rss_mb(), "load_before": load()}
        return self.record

    def __exit__(self, *exc):
        from t2m.process_memory import peak_rss_mb

        self.record.update(peak_rss_mb=peak_rss_mb(), load_after=load())
        return False


def memory(args, precision: str, which: str) -> dict:
    """Peak memory (run in a fresh process): ``trainer``: the trainer set up, on its first batches, its
    largest one and an evaluation; ``bare``: the bare step of the trainer's model on that largest batch."""
    from t2m.training.trainer import TrainingRun, collate_pairs, epoch_batches, prepare_tokenizer
    from t2m.training.data import epoch_examples, load_training_data

    out_dir = fresh_out_dir(args, f"memory-{precision}-{which}")
    config = trainer_config(args, precision, out_dir)
    with Peak() as record:
        if which == "trainer":
            run = TrainingRun(config, resume=False)
            run.progress = _Quiet()
            data, tokenizer = run.data, run.tokenizer
        else:
            data = load_training_data(config, out_dir)
            tokenizer = prepare_tokenizer(config, data, out_dir)
        batches = epoch_batches(tokenizer, epoch_examples(data, config, 0), config, 0)
        largest = max(batches, key=lambda b: len(b) * (max(len(p[0]) for p in b) + max(len(p[1]) for p in b)))
        record["largest_batch"] = [len(largest), max(len(p[0]) for p in largest), max(len(p[1]) for p in largest)]
        if which == "trainer":
            takes_pairs = "pairs" in inspect.signature(TrainingRun.forward_backward).parameters
            for pairs in batches[: args.memory_steps] + [largest]:
                run.forward_backward(pairs if takes_pairs else collate_pairs(pairs, tokenizer.pad_token_id, config))
            record["steps"] = args.memory_steps + 1
            start = time.perf_counter()
            run.evaluate()
            record["evaluation_s"] = round(time.perf_counter() - start, 1)
        else:
            bare = Bare(trainer_model(config, tokenizer), config, precision)
            tokens, seconds = bare.timed(collate_pairs(largest, tokenizer.pad_token_id, config))
            record.update(tokens=tokens, seconds=round(seconds, 2))
    shutil.rmtree(out_dir, ignore_errors=True)
    return record


def memory_in_child(args, precision: str, which: str) -> dict:
    command = [sys.executable, __file__, "-", "--memory-child", f"{precision}:{which}", "--recipe", args.recipe,
               "--init-from", args.init_from, "--tokenizer", args.tokenizer, "--work", args.work,
               "--memory-steps", str(args.memory_steps)]
    command += (["--data", args.data] if args.data else []) + (["--threads", str(args.threads)] if args.threads else [])
    command += [x for option in args.set or [] for x in ("--set", option)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {precision}:{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Quiet:
    def update(self, *args):
        pass

    def set_postfix(self, **kwargs):
        pass

    def write(self, text):
        pass


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
    parser.add_argument("--steps", type=int, default=12, help="trainer steps per precision (the first is not timed)")
    parser.add_argument("--memory-steps", type=int, default=10, help="trainer batches before the largest one")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--fixed", default="24x128x96", help="fixed bare batch: batch x source x target tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--set", action="append", help="KEY=JSON: override a training option (e.g. length_multiple=8)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory phases")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # PRECISION:trainer|bare, in a fresh process
    parser.add_argument("--work", default="/tmp/t2m_bench_train", help="scratch folder (runs, neighbour cache)")
    parser.add_argument("--profile", type=Path, help="cProfile the first precision's speed run into this text file")
    args = parser.parse_args()

    import torch

    from t2m.model.precision import native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.memory_child:
        print(json.dumps(memory(args, *args.memory_child.split(":"))))
        return
    fixed = tuple(int(x) for x in args.fixed.split("x"))
    result = {"cpu": cpu_info(), "versions": versions(), "native_bf16": native_bf16(),
              "threads": torch.get_num_threads(), "recipe": args.recipe, "overrides": args.set or [],
              "fixed_batch": args.fixed, "steps": args.steps, "load_start": load(), "speed": {}, "memory": {}}
    print(json.dumps({k: result[k] for k in ("cpu", "versions", "native_bf16", "threads", "overrides")}), flush=True)
    for precision in args.precisions:
        profile = args.profile if precision == args.precisions[0] else None
        result["speed"][precision] = found = speed(args, precision, fixed, profile)
        print(json.dumps({precision: found}), flush=True)
    if not args.no_memory:
        for precision in args.precisions:
            result["memory"][precision] = found = {which: memory_in_child(args, precision, which)
                                                   for which in ("trainer", "bare")}
            print(json.dumps({precision: found}), flush=True)
    result["load_end"] = load()
    result["summary"] = {
        precision: {
            "trainer_tokens_per_s": s["trainer"]["tokens_per_s"],
            "bare_fixed_tokens_per_s": s["bare_fixed"]["tokens_per_s"],
            "bare_real_tokens_per_s": s["bare_real"]["tokens_per_s"],
            "trainer_over_bare_fixed": round(s["trainer"]["tokens_per_s"] / s["bare_fixed"]["tokens_per_s"], 3),
            "trainer_over_bare_real": round(s["trainer"]["tokens_per_s"] / s["bare_real"]["tokens_per_s"], 3),
            "bf16_over_fp32_bare_fixed": round(
                (s["bare_fixed"]["tokens_per_s"] / s["bare_fixed_fp32"]["tokens_per_s"]) if precision == "bf16"
                else (s["bare_fixed_bf16"]["tokens_per_s"] / s["bare_fixed"]["tokens_per_s"]), 3),
            "median_load": statistics.median(s["load_per_step"]) if s["load_per_step"] else None,
            **({"trainer_peak_rss_mb": result["memory"][precision]["trainer"]["peak_rss_mb"],
                "bare_largest_batch_peak_rss_mb": result["memory"][precision]["bare"]["peak_rss_mb"]}
               if precision in result["memory"] else {}),
        }
        for precision, s in result["speed"].items()
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
