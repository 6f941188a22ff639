"""Multitask training of one shared-encoder T5 on text2mol and mol2text (``t2m train``).

Every epoch holds both tasks of every pair, and batches mix them (Text+Chem T5's recipe; batches are
grouped by length, so most but not all of them hold both). Optionally a third, self-supervised task uses
unlabeled molecules: read a randomised SMILES, write the molecule's SMILES as the dataset writes it,
which teaches the decoder SMILES syntax from many more molecules than the pairs have.

Speed and memory on CPU (``tests/benchmarks/bench_train.py`` measures them against a bare training step):
batches grouped by both lengths and padded to multiples of 8, large batches split into micro-batches
(``micro_batch_mb``), dropout and attention through :mod:`t2m.model.kernels` (``fast_kernels``), the
copy head's loss from the gold tokens only, and freed memory returned to the system after every step.

Runs unchanged under ``accelerate launch`` (each process takes its share of every step's batches;
gradients are averaged by DDP). Checkpoints are Hugging Face directories (safetensors) with the
tokenizer, generation config, training config and a ``trainer_state.json``; an interrupted run resumes
from the newest one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from evaluation.metrics import caption_bleu, molecule_scores, text_tokenizer
from t2m.decoding.batching import collate, encode_sources, micro_batches
from t2m.editing import edit_agreement
from t2m.decoding.translator import Translator
from t2m.process_memory import peak_rss_mb
from t2m.model.precision import native_bf16
from t2m.model.checkpoint import (
    CheckpointInfo,
    DECODING_KEYS,
    RECOMMENDED_DECODING,
    check_decoding_defaults,
    make_config,
    model_class,
    write_checkpoint_info,
)
from t2m.data import write_records_tsv
from t2m.neighbours.database import NeighbourDatabase, NeighbourFormat, copied_share
from t2m.neighbours.ranker import fitted_for, load_rankers, save_rankers
from t2m.options import DecodingOptions, SmilesConstraints
from t2m.tasks import MOL2TEXT, TEXT2MOL
from t2m.tokenizer import load_tokenizer, train_tokenizer
from t2m.training.config import TrainConfig
from t2m.training.data import TrainingData, epoch_examples, load_training_data
from t2m.model.kernels import install

log = logging.getLogger(__name__)

SORT_POOL = 100  # batches whose pairs are sorted by length together (epoch_batches)
SORT_GROUP = 8  # batches of a pool sorted by target length together (epoch_batches)


def collate_pairs(batch_pairs, pad_id: int, config: TrainConfig) -> dict:
    """Padded tensors of one batch of (source ids, target ids) pairs, as the trainer feeds the model."""
    return collate(*zip(*batch_pairs), pad_id, config.length_multiple, config.max_source_len, config.max_target_len)


def epoch_batches(tokenizer, examples, config: TrainConfig, epoch: int) -> list[list[tuple[list[int], list[int]]]]:
    """Batches of ``config.batch_size`` pairs grouped by length, in shuffled order. Within shuffled pools of
    ``SORT_POOL`` batches the pairs are sorted by source length, and each run of ``SORT_GROUP`` batches'
    worth by target length: a batch holds pairs alike in both lengths. Sorting by source + target length in
    pools of 50 left 42% of the default recipe's batches padding (30% with neighbours in the inputs) at
    lengths rounded to 32; this way, rounded to 8 and split as the trainer splits large batches
    (t2m.decoding.batching.micro_batches), 16% (9%).
    """
    rng = random.Random(config.seed * 7919 + epoch)
    sources = encode_sources(tokenizer, [e[0] for e in examples], config.max_source_len)
    targets = encode_sources(tokenizer, [e[1] for e in examples], config.max_target_len)
    pairs = list(zip(sources, targets))
    rng.shuffle(pairs)
    size = config.batch_size
    batches = []
    for start in range(0, len(pairs), size * SORT_POOL):
        pool = sorted(pairs[start : start + size * SORT_POOL], key=lambda p: len(p[0]))
        for group_start in range(0, len(pool), size * SORT_GROUP):
            group = sorted(pool[group_start : group_start + size * SORT_GROUP], key=lambda p: len(p[1]))
            batches.extend(group[i : i + size] for i in range(0, len(group), size))
    rng.shuffle(batches)
    return batches


# ------------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def checkpoint_decoding(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """The decoding defaults every checkpoint of ``config`` carries (t2m.json "decoding"), validated."""
    return check_decoding_defaults('the training config\'s "decoding"',
                                   RECOMMENDED_DECODING if config.decoding is None else config.decoding)


def training_rankers(config: TrainConfig, data: TrainingData, say=print) -> dict[str, Any] | None:
    """The neighbour rankers every checkpoint of a run with neighbours carries: ``config.ranker`` (it must
    have been fitted on the training pairs), else those of ``config.init_from`` when fitted on the same
    pairs, else None -- and ``say`` tells how checkpoints will translate without one."""
    if not config.neighbours:
        return None

    database = NeighbourDatabase.from_records(data.train)
    fit_hint = "t2m ranker --database OUT/model/memory.tsv --out ranker.json, then name it in the config's \"ranker\""
    if config.ranker:
        rankers = load_rankers(config.ranker)
        mismatch = fitted_for(rankers, database)
        if mismatch:
            raise ValueError(f"{config.ranker}: {mismatch} training pairs of this run; fit one on them ({fit_hint})")
        return rankers
    if config.init_from and (Path(config.init_from) / "t2m.json").is_file():
        fmt = NeighbourFormat.from_meta(json.loads((Path(config.init_from) / "t2m.json").read_text()))
        ranker_file = fmt.ranker_path(config.init_from) if fmt is not None else None
        if ranker_file is not None and ranker_file.is_file():
            rankers = load_rankers(ranker_file)
            if fitted_for(rankers, database) is None:
                say(f"checkpoints carry the neighbour rankers of {ranker_file} (fitted on these training pairs)")
                return rankers
    say(f"checkpoints translate without a neighbour ranker (none fitted on these {len(database)} training pairs): "
        f"inputs read their nearest pair; to rank the nearest pairs, {fit_hint}")
    return None


def save_checkpoint(path: Path, model, tokenizer, config: TrainConfig, state: dict, optimizer=None, scheduler=None,
                    data: TrainingData | None = None, rankers: dict[str, Any] | None = None) -> None:
    """Write a complete checkpoint to ``path`` atomically (a temp folder renamed into place), carrying what
    translating with it needs: the decoding defaults of ``config`` (t2m.json "decoding"), and for a model
    trained with neighbours its memory (the training pairs it retrieves from, ``memory.tsv``), how its inputs
    are built and ``rankers`` (``ranker.json``) where the run has them."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    extra: dict[str, Any] = {"training_setting": state.get("setting", ""), "decoding": checkpoint_decoding(config)}
    if data is not None and data.described:
        extra["training_data"] = data.described
    if config.neighbours and data is not None:
        neighbour_format = NeighbourFormat(k=config.neighbours, show_similarity=config.show_similarity,
                                           ranker="ranker.json" if rankers else None)
        write_records_tsv(tmp / neighbour_format.database, data.train)
        if rankers:
            save_rankers(tmp / "ranker.json", rankers)
        extra["neighbours"] = neighbour_format.to_meta()
    write_checkpoint_info(tmp, prompt_style="textchem", **extra)
    (tmp / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# quick dev metric


# the quick dev evaluation shows what the model itself writes: no valid-SMILES choice, no SMILES constraint
UNCONSTRAINED = SmilesConstraints(valid_smiles=False, syntax=False, valence=False)


def quick_dev_outputs(model, tokenizer, data: TrainingData, n: int, max_len: int = 256,
                      decoding: dict[str, dict[str, Any]] | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """Per task, (references, outputs) of the first ``n`` dev rows: greedy decoding through
    :meth:`t2m.decoding.translator.Translator.decode` (the code ``t2m translate`` decodes with) with the repetition
    options of ``decoding`` (the run's checkpoint defaults, as ``t2m translate`` applies them) and no SMILES
    constraint. Leaves ``model`` in eval mode."""
    rows = data.dev[:n]
    if not rows:
        return {}
    translator = Translator(model, tokenizer, CheckpointInfo(path=""))
    found = {}
    for task in (TEXT2MOL, MOL2TEXT):
        sources = [data.source(i, task, split="dev") for i in range(len(rows))]
        options = {k: v for k, v in (decoding or {}).get(task, {}).items() if k in DECODING_KEYS}
        decoded = translator.decode(encode_sources(tokenizer, sources, translator.max_source_len), task,
                                    DecodingOptions(max_new_tokens=max_len, **options), UNCONSTRAINED)
        references = [r["smiles"] if task == TEXT2MOL else r["description"] for r in rows]
        found[task] = (references, [t.output for t in decoded])
    return found


def quick_dev_scores(data: TrainingData, outputs: dict[str, tuple[list[str], list[str]]],
                     caption_tokenizer=None) -> dict[str, float]:
    """The logged dev numbers of :func:`quick_dev_outputs`' ``outputs``, each computed by :mod:`evaluation.metrics`
    as ``t2m eval`` computes it (MolT5 mode): text2mol ``dev_validity`` and ``dev_exact`` (``validity``,
    ``exact_match``), mol2text ``dev_bleu4`` (``bleu4`` over SciBERT tokens; ``caption_tokenizer``: a loaded
    :class:`evaluation.text_tokenizer.TextTokenizer`, None: the default one). With neighbours in the inputs,
    per task the share of the outputs' n-grams copied from the neighbours shown (``dev_copied_<task>``) beside
    the same share of the references (``dev_gold_copied_<task>``: what copying could give), see
    :func:`t2m.neighbours.database.copied_share`, and whether the outputs change the neighbour's target where the
    reference does (``dev_changed_where_gold_changed_<task>``, ``dev_kept_where_gold_kept_<task>``,
    :mod:`t2m.editing`)."""
    out: dict[str, float] = {}
    for task, (refs, hyps) in outputs.items():
        if task == TEXT2MOL:
            molecules = molecule_scores(refs, hyps)
            out["dev_validity"] = molecules["validity"]
            out["dev_exact"] = molecules["exact_match"]
        else:
            out["dev_bleu4"] = caption_bleu(refs, hyps, caption_tokenizer)["bleu4"]
        if data.dev_neighbours:
            shown = data.dev_neighbours[task][: len(refs)]
            out[f"dev_copied_{task}"] = copied_share(hyps, shown, task)
            out[f"dev_gold_copied_{task}"] = copied_share(refs, shown, task)
            edits = edit_agreement(hyps, refs, [n[0].target if n else "" for n in shown], task)
            out[f"dev_changed_where_gold_changed_{task}"] = edits["changed_where_gold_changed"]
            out[f"dev_kept_where_gold_kept_{task}"] = edits["kept_where_gold_kept"]
    return out


def quick_dev_metrics(model, tokenizer, data: TrainingData, n: int, max_len: int = 256,
                      decoding: dict[str, dict[str, Any]] | None = None, caption_tokenizer=None) -> dict[str, float]:
    """:func:`quick_dev_scores` of :func:`quick_dev_outputs` (greedy, ``n`` dev rows per task); ``model`` is
    back in training mode after."""
    outputs = quick_dev_outputs(model, tokenizer, data, n, max_len, decoding)
    model.train()
    return quick_dev_scores(data, outputs, caption_tokenizer)


def dev_loss(model, batches, autocast) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast():
        for batch in batches:
            loss = model(**batch).loss
            n = int((batch["labels"] != -100).sum())
            total += float(loss) * n
            count += n
    model.train()
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------------
# the loop


def training_precision(config: TrainConfig) -> str:
    """The ``mixed_precision`` for accelerate that ``config.bf16`` means here: "bf16", or "no" (float32)."""
    if config.bf16 not in (True, False, "force"):
        raise ValueError(f"bf16 = {config.bf16!r}: use true, false or \"force\" (see t2m.training.trainer.TrainConfig)")
    if config.bf16 == "force":
        return "bf16"
    if config.bf16 and not native_bf16():
        log.warning("bf16 autocast asked for, but this machine has no native bf16 (no CUDA bf16, no AVX512-BF16 "
                    "or AMX on the CPU), where it runs about 10x slower than float32: training in float32. "
                    "Set \"bf16\": \"force\" in the config to use bf16 anyway.")
        return "no"
    return "bf16" if config.bf16 else "no"


def _lr_lambda(config: TrainConfig):
    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def prepare_tokenizer(config: TrainConfig, data: TrainingData, out_dir: Path):
    if config.tokenizer:
        return load_tokenizer(config.tokenizer)
    if config.init_from:
        return load_tokenizer(config.init_from)
    tok_dir = out_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        return load_tokenizer(tok_dir)
    texts = [r["description"] for r in data.train] + [r["smiles"] for r in data.train]
    if config.tokenizer_uses_unlabeled:
        texts += data.unlabeled_smiles
    train_tokenizer(texts, tok_dir, config.vocab_size)
    return load_tokenizer(tok_dir)


def build_model(config: TrainConfig, tokenizer, checkpoint: Path | None):
    """The model to train: ``checkpoint`` (resuming), else ``config.init_from``, else a fresh T5 of the
    preset; with the copy head when the config asks for it, and a generation config for the quick eval."""
    from transformers import GenerationConfig

    if checkpoint is not None:
        model = model_class(checkpoint).from_pretrained(str(checkpoint))
    elif config.init_from:
        model = model_class(config.init_from).from_pretrained(config.init_from)
    else:
        model_config = make_config(config.preset, config.model_config, vocab_size=len(tokenizer),
                                   dropout_rate=config.dropout)
        model = model_class(model_config)(model_config)
    if config.copy_head and not getattr(model.config, "copy_head", False):
        from t2m.model.copy_head import with_copy_head

        model = with_copy_head(model)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=config.max_target_len,
    )
    model.train()
    return model


def optimizer_for(model, config: TrainConfig):
    """AdamW with weight decay on the matrices only."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )


def dev_batches_for(data: TrainingData, tokenizer, config: TrainConfig) -> list[dict]:
    """The dev-loss batches: both tasks of the first 256 dev rows, inputs built as at test time."""
    dev_examples = []
    for i, row in enumerate(data.dev[:256]):
        dev_examples.append((data.source(i, TEXT2MOL, split="dev"), row["smiles"], TEXT2MOL))
        dev_examples.append((data.source(i, MOL2TEXT, split="dev"), row["description"], MOL2TEXT))
    return [collate_pairs(b, tokenizer.pad_token_id, config)
            for b in epoch_batches(tokenizer, dev_examples, config, epoch=-1)]


class TrainingRun:
    """One ``t2m train`` run: the model, optimizer and data of :func:`train`, its state (``step``, ``epoch``,
    ``batch_in_epoch``, ``tokens``, ``elapsed_s``: what a checkpoint's ``trainer_state.json`` holds) and
    its steps, logging, evaluation and checkpoints."""

    def __init__(self, config: TrainConfig, resume: bool = True):
        import torch
        from accelerate import Accelerator

        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        # cpu=True where there is no GPU: otherwise accelerate ignores the torchrun environment on a CPU-only
        # machine and every process trains alone.
        precision = training_precision(config)
        self.accelerator = accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                                                     gradient_accumulation_steps=config.grad_accum)
        self.out_dir = out_dir = Path(config.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        random.seed(config.seed)
        torch.manual_seed(config.seed)

        self.data = load_training_data(config, out_dir)
        checkpoint_decoding(config)  # a bad "decoding" section fails now, not at the first checkpoint
        self.rankers = training_rankers(config, self.data, accelerator.print)
        with accelerator.main_process_first():
            self.tokenizer = prepare_tokenizer(config, self.data, out_dir)

        checkpoints = checkpoint_dirs(out_dir) if resume else []
        last = checkpoints[-1] if checkpoints else None
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0, "elapsed_s": 0.0,
                      "setting": self.data.setting}
        if last is not None:
            self.state.update(json.loads((last / "trainer_state.json").read_text()))
            accelerator.print(f"resuming from {last} (step {self.state['step']})")
        model = build_model(config, self.tokenizer, last)
        if config.fast_kernels:
            install(model)
        self.state["precision"] = precision
        optimizer = optimizer_for(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
        if last is not None and (last / "optimizer.pt").is_file():
            saved = torch.load(last / "optimizer.pt", weights_only=True)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        self.model_config = model.config
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.dev_batches = dev_batches_for(self.data, self.tokenizer, config)
        # the caption tokens dev BLEU-4 counts (SciBERT, as `t2m eval`): a missing one fails now, not at step eval_every
        self.text_tokenizer = text_tokenizer() if config.quick_eval_rows and accelerator.is_main_process else None
        self.log_file = out_dir / "train_log.jsonl"
        self.start_time = time.time() - self.state["elapsed_s"]  # the run's wall time, all pieces (logged)
        self.piece_start = time.time()  # this invocation's: what max_minutes bounds, so the same command resumes
        self.window = {"tokens": 0, "start": time.time(), "loss": 0.0, "n": 0}
        self._malloc_trim = None

    def run(self) -> Path:
        from tqdm.auto import tqdm

        self.progress = tqdm(total=self.config.max_steps, initial=self.state["step"], desc="train",
                             dynamic_ncols=True, disable=not self.accelerator.is_main_process)
        while not self.epoch():
            self.state["epoch"] += 1
            self.state["batch_in_epoch"] = 0
        self.snapshot(final=True)
        self.progress.close()
        return self.out_dir / "model"

    def epoch(self) -> bool:
        """Train on the rest of the current epoch; True when the run is done (max_steps or max_minutes)."""
        config, state, accelerator = self.config, self.state, self.accelerator
        examples = epoch_examples(self.data, config, state["epoch"])
        batches = epoch_batches(self.tokenizer, examples, config, state["epoch"])
        # each optimizer step consumes world * grad_accum batches; process `rank` takes its share
        world, rank = accelerator.num_processes, accelerator.process_index
        usable = len(batches) - len(batches) % (world * config.grad_accum)
        step_tokens = 0
        for index in range(state["batch_in_epoch"], usable, world):
            step_tokens += self.forward_backward(batches[index + rank])
            state["batch_in_epoch"] = index + world
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            state["tokens"] += step_tokens
            step_tokens = 0
            self.release_memory()
            if self.after_step():
                return True
        return False

    def forward_backward(self, pairs: list[tuple[list[int], list[int]]]) -> int:
        """One batch of (source ids, target ids) through the model (in micro-batches where it is large),
        backward, and (when gradients sync) the optimizer step; returns the batch's tokens (non-pad source +
        target) times the processes (each took a batch like it)."""
        accelerator, model, config = self.accelerator, self.model, self.config
        parts = micro_batches(pairs, config.micro_batch_mb, self.model_config, self.state["precision"],
                              config.length_multiple, config.max_source_len, config.max_target_len)
        targets = sum(len(p[1]) for p in pairs)
        batch_loss = 0.0
        with accelerator.accumulate(model):
            for i, part in enumerate(parts):
                batch = collate_pairs(part, self.tokenizer.pad_token_id, config)
                # gradients sync (between processes) once per batch, after its last micro-batch
                sync = contextlib.nullcontext() if i == len(parts) - 1 else accelerator.no_sync(model)
                with sync, accelerator.autocast():
                    # the model's loss is a mean over target tokens: weighted, the batch's mean
                    loss = model(**batch).loss * (sum(len(p[1]) for p in part) / targets)
                    accelerator.backward(loss)
                batch_loss += float(loss.detach())
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        n_tokens = (sum(len(p[0]) for p in pairs) + targets) * accelerator.num_processes
        self.window["tokens"] += n_tokens
        self.window["loss"] += batch_loss
        self.window["n"] += 1
        return n_tokens

    def release_memory(self) -> None:
        """Hand the memory freed by the step back to the system (glibc's ``malloc_trim``), so that the next
        step's activations start from the live memory rather than from the last step's high-water mark:
        on the default recipe the peak resident memory over 40 steps went 2.87 -> 2.45 GB, at the same
        speed (forcing large blocks into their own mappings instead, M_MMAP_THRESHOLD, halved the speed)."""
        if self._malloc_trim is None:
            try:
                import ctypes

                self._malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
            except (OSError, AttributeError):
                self._malloc_trim = False
        if self._malloc_trim:
            self._malloc_trim(0)

    def after_step(self) -> bool:
        """Log, evaluate and save as the config says after an optimizer step; True when the run is done."""
        config, step = self.config, self.state["step"]
        self.progress.update(1)
        if step % config.log_every == 0 or step == 1:
            self.log_window()
        if step % config.eval_every == 0 and self.accelerator.is_main_process:
            self.evaluate()
        out_of_time = config.max_minutes is not None and (time.time() - self.piece_start) > 60 * config.max_minutes
        if step >= config.max_steps or out_of_time or (config.stop_at_step is not None and step >= config.stop_at_step):
            return True
        if step % config.save_every == 0:
            self.snapshot()
        return False

    def log_window(self) -> None:
        window, state = self.window, self.state
        elapsed = time.time() - window["start"]
        record = {"step": state["step"], "epoch": state["epoch"], "loss": window["loss"] / max(window["n"], 1),
                  "lr": self.scheduler.get_last_lr()[0], "tokens": state["tokens"],
                  "tokens_per_s": window["tokens"] / max(elapsed, 1e-9),
                  "elapsed_s": time.time() - self.start_time, "peak_rss_mb": peak_rss_mb()}
        self.progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
        if self.accelerator.is_main_process:
            with self.log_file.open("a") as f:
                f.write(json.dumps(record) + "\n")
        self.window = {"tokens": 0, "start": time.time(), "loss": 0.0, "n": 0}

    def evaluate(self) -> None:
        unwrapped = self.accelerator.unwrap_model(self.model)
        record = {"step": self.state["step"],
                  "dev_loss": dev_loss(unwrapped, self.dev_batches, self.accelerator.autocast)}
        record.update(quick_dev_metrics(unwrapped, self.tokenizer, self.data, self.config.quick_eval_rows,
                                        self.config.max_target_len, checkpoint_decoding(self.config),
                                        self.text_tokenizer))
        self.progress.write(json.dumps(record))
        with self.log_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def snapshot(self, final: bool = False) -> None:
        state, config, out_dir = self.state, self.config, self.out_dir
        state["elapsed_s"] = time.time() - self.start_time
        if self.accelerator.is_main_process:
            unwrapped = self.accelerator.unwrap_model(self.model)
            path = out_dir / "checkpoints" / f"step-{state['step']}"
            save_checkpoint(path, unwrapped, self.tokenizer, config, dict(state), self.optimizer, self.scheduler,
                            self.data, self.rankers)
            for old in checkpoint_dirs(out_dir)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            if final:
                save_checkpoint(out_dir / "model", unwrapped, self.tokenizer, config, dict(state), data=self.data,
                                rankers=self.rankers)
        self.accelerator.wait_for_everyone()


def train(config: TrainConfig, resume: bool = True) -> Path:
    """Train per ``config``; returns the directory of the final model (``<out_dir>/model``)."""
    return TrainingRun(config, resume).run()

