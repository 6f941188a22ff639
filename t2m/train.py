"""Multitask training of one shared-encoder T5 on text2mol and mol2text (``t2m train``).

Every batch mixes both tasks (Text+Chem T5's recipe). Optionally a third, self-supervised task uses
unlabeled molecules: read a randomised SMILES, write the molecule's SMILES as the dataset writes it,
which teaches the decoder SMILES syntax from many more molecules than the pairs have.

Runs unchanged under ``accelerate launch`` (each process takes its share of every step's batches;
gradients are averaged by DDP). Checkpoints are Hugging Face directories (safetensors) with the
tokenizer, generation config, training config and a ``trainer_state.json``; an interrupted run resumes
from the newest one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2m.memory import peak_rss_mb
from t2m.tasks import MOL2TEXT, PROMPTS, TEXT2MOL

log = logging.getLogger(__name__)

SMILES2SMILES = "smiles2smiles"
AUX_PROMPT = "Write the SMILES of the molecule: "


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved beside every checkpoint."""

    out_dir: str = "runs/t2m"
    data_dir: str | None = None  # ChEBI-20 folder (default: $T2M_SHARED_DATA/chebi20 or ../shared/data/chebi20)
    setting: str = "auto"  # "benchmark" (validation minus dev slice) or "official" (train.txt)
    dev_size: int = 300  # benchmark setting: rows of validation.txt held out as the dev slice
    # tokenizer: a directory to load, or None to train one on the training texts
    tokenizer: str | None = None
    vocab_size: int = 4000
    tokenizer_uses_unlabeled: bool = True
    # model: a checkpoint directory to start from, else a preset or config file, from scratch
    init_from: str | None = None
    preset: str = "cpu-small"
    model_config: str | None = None
    dropout: float = 0.1
    # data
    max_source_len: int = 256
    max_target_len: int = 256
    length_multiple: int = 32
    batch_size: int = 32
    grad_accum: int = 1
    smiles_augment: float = 0.5  # probability of a randomised SMILES as mol2text source
    aux_unlabeled_per_epoch: int = 0  # smiles2smiles examples per epoch from the unlabeled molecules
    # retrieval-augmented inputs (t2m.neighbours): each source carries its `neighbours` nearest training pairs
    # (never itself nor the same molecule), drawn each epoch from its `neighbour_pool` nearest
    neighbours: int = 0
    neighbour_pool: int = 4
    neighbour_p_nearest: float = 0.5  # probability of showing the nearest ones rather than a draw from the pool
    show_similarity: bool = True
    copy_head: bool = False  # pointer-generator head (t2m.copy_model): copy tokens from the input
    # optimisation
    lr: float = 7e-4
    weight_decay: float = 0.01
    warmup_steps: int = 300
    max_steps: int = 10000
    min_lr_ratio: float = 0.05
    max_minutes: float | None = None  # stop (and save) after this much wall time
    # bf16 autocast where the hardware has native bf16 (CUDA, or a CPU with AVX512-BF16 or AMX); on other
    # CPUs bf16 is emulated and far slower than float32, so training falls back to float32 with a warning.
    # "force" uses bf16 regardless.
    bf16: bool | str = True
    seed: int = 0
    # bookkeeping
    log_every: int = 20
    eval_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 2
    quick_eval_rows: int = 32
    threads: int | None = None

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "TrainConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training option(s) {', '.join(sorted(unknown))}; see t2m.train.TrainConfig")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# data


@dataclass
class TrainingData:
    train: list[dict]
    dev: list[dict]
    unlabeled_smiles: list[str] = field(default_factory=list)
    setting: str = ""
    # with config.neighbours: task -> per train row its candidate neighbours; per dev row its nearest ones
    train_neighbours: dict[str, list] = field(default_factory=dict)
    dev_neighbours: dict[str, list] = field(default_factory=dict)
    described: dict = field(default_factory=dict)  # t2m.data.Chebi20Splits.describe()

    def source(self, row: int, task: str, neighbours=None, split: str = "train", show_similarity: bool = True) -> str:
        """The prompted model input of row ``row`` of ``split`` for ``task``, with ``neighbours`` (default:
        the row's nearest ones) when the data has neighbours."""
        from t2m.neighbours import conditioned_source

        record = (self.train if split == "train" else self.dev)[row]
        text = record["description"] if task == TEXT2MOL else record["smiles"]
        found = self.train_neighbours if split == "train" else self.dev_neighbours
        if found:
            if neighbours is None:
                neighbours = found[task][row]
            text = conditioned_source(text, task, neighbours, show_similarity)
        return PROMPTS[task] + text


def load_training_data(config: TrainConfig, cache_dir: Path | None = None) -> TrainingData:
    from t2m.data import load_chebi20_records, load_chebi20_unlabeled_records

    splits = load_chebi20_records(config.data_dir, config.setting, dev_size=config.dev_size)
    unlabeled: list[str] = []
    if config.aux_unlabeled_per_epoch or (config.tokenizer is None and config.tokenizer_uses_unlabeled):
        try:
            unlabeled = [r["smiles"] for r in load_chebi20_unlabeled_records(config.data_dir)]
        except FileNotFoundError:
            unlabeled = []
    data = TrainingData(splits.train, splits.dev, unlabeled, splits.setting, described=splits.describe())
    if config.neighbours:
        data.train_neighbours, data.dev_neighbours = find_training_neighbours(config, data, cache_dir)
    return data


def find_training_neighbours(config: TrainConfig, data: TrainingData, cache_dir: Path | None):
    """Per task, each training row's ``neighbour_pool`` nearest other-molecule pairs, and each dev row's
    ``neighbours`` nearest pairs (as at test time), cached in ``cache_dir/neighbours.json``."""
    from t2m.neighbours import (NeighbourDatabase, load_neighbour_cache, save_neighbour_cache,
                                training_neighbours)

    cache = cache_dir / "neighbours.json" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        found = load_neighbour_cache(cache)
        if len(found.get("train-" + MOL2TEXT, [])) == len(data.train) and len(found.get("dev-" + MOL2TEXT, [])) == len(data.dev):
            return ({t: found["train-" + t] for t in (TEXT2MOL, MOL2TEXT)},
                    {t: found["dev-" + t] for t in (TEXT2MOL, MOL2TEXT)})
    database = NeighbourDatabase.from_records(data.train)
    train, dev = {}, {}
    for task in (TEXT2MOL, MOL2TEXT):
        train[task] = training_neighbours(database, data.train, task, config.neighbour_pool)
        queries = [r["description"] if task == TEXT2MOL else r["smiles"] for r in data.dev]
        dev[task] = database.search(queries, task, config.neighbours)
    if cache is not None:
        save_neighbour_cache(cache, {**{"train-" + t: v for t, v in train.items()}, **{"dev-" + t: v for t, v in dev.items()}})
    return train, dev


def randomized_smiles(smiles: str, rng: random.Random) -> str:
    """A random valid SMILES of the same molecule, or ``smiles`` itself when RDKit cannot parse it."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return smiles
    try:
        return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=rng.randrange(1, 2**31))[0]
    except Exception:  # noqa: BLE001 - RDKit raises many kinds
        return smiles


def epoch_examples(data: TrainingData, config: TrainConfig, epoch: int) -> list[tuple[str, str, str]]:
    """(prompted source, target, task) for one epoch: every pair in both directions, plus aux rows."""
    from t2m.neighbours import conditioned_source, draw_neighbours

    rng = random.Random(config.seed * 100003 + epoch)
    examples = []
    for i, row in enumerate(data.train):
        smiles, description = row["smiles"], row["description"]
        source = randomized_smiles(smiles, rng) if rng.random() < config.smiles_augment else smiles
        sources = {TEXT2MOL: description, MOL2TEXT: source}
        if data.train_neighbours:
            for task in (TEXT2MOL, MOL2TEXT):
                shown = draw_neighbours(data.train_neighbours[task][i], config.neighbours, rng, config.neighbour_p_nearest)
                sources[task] = conditioned_source(sources[task], task, shown, config.show_similarity)
        examples.append((PROMPTS[TEXT2MOL] + sources[TEXT2MOL], smiles, TEXT2MOL))
        examples.append((PROMPTS[MOL2TEXT] + sources[MOL2TEXT], description, MOL2TEXT))
    if config.aux_unlabeled_per_epoch and data.unlabeled_smiles:
        for smiles in rng.sample(data.unlabeled_smiles, min(config.aux_unlabeled_per_epoch, len(data.unlabeled_smiles))):
            examples.append((AUX_PROMPT + randomized_smiles(smiles, rng), smiles, SMILES2SMILES))
    return examples


def epoch_batches(tokenizer, examples, config: TrainConfig, epoch: int) -> list[list[tuple[list[int], list[int]]]]:
    """Length-sorted batches (within shuffled pools of 50 batches), in shuffled order."""
    from t2m.batching import encode_sources

    rng = random.Random(config.seed * 7919 + epoch)
    sources = encode_sources(tokenizer, [e[0] for e in examples], config.max_source_len)
    targets = encode_sources(tokenizer, [e[1] for e in examples], config.max_target_len)
    pairs = list(zip(sources, targets))
    rng.shuffle(pairs)
    pool = config.batch_size * 50
    batches = []
    for start in range(0, len(pairs), pool):
        chunk = sorted(pairs[start : start + pool], key=lambda p: (len(p[0]) + len(p[1])))
        batches.extend(chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size))
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


def save_checkpoint(path: Path, model, tokenizer, config: TrainConfig, state: dict, optimizer=None, scheduler=None,
                    data: TrainingData | None = None) -> None:
    """Write a complete checkpoint to ``path`` atomically (a temp folder renamed into place). A model trained
    with neighbours gets its memory (the training pairs it retrieves from, ``memory.tsv``) and says in
    ``t2m.json`` how its inputs are built."""
    import torch

    from t2m.modeling import write_checkpoint_info

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    extra: dict[str, Any] = {"training_setting": state.get("setting", "")}
    if data is not None and data.described:
        extra["training_data"] = data.described
    if config.neighbours and data is not None:
        from t2m.data import write_records_tsv
        from t2m.neighbours import NeighbourFormat

        neighbour_format = NeighbourFormat(k=config.neighbours, show_similarity=config.show_similarity)
        write_records_tsv(tmp / neighbour_format.database, data.train)
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


def quick_dev_metrics(model, tokenizer, data: TrainingData, n: int, max_len: int = 256) -> dict[str, float]:
    """Greedy decoding of ``n`` dev rows per task: text2mol validity and exact (InChI), mol2text BLEU-4."""
    import torch
    from nltk.translate.bleu_score import corpus_bleu
    from rdkit import Chem, RDLogger

    from t2m.batching import collate, encode_sources

    RDLogger.DisableLog("rdApp.*")
    rows = data.dev[:n]
    if not rows:
        return {}
    out: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for task in (TEXT2MOL, MOL2TEXT):
            sources = [data.source(i, task, split="dev") for i in range(len(rows))]
            refs = [r["smiles"] if task == TEXT2MOL else r["description"] for r in rows]
            batch = collate(encode_sources(tokenizer, sources, 512), None, tokenizer.pad_token_id, 32, 512)
            generated = model.generate(**batch, max_new_tokens=max_len, num_beams=1, do_sample=False)
            hyps = tokenizer.batch_decode(generated, skip_special_tokens=True)
            if task == TEXT2MOL:
                mols = [Chem.MolFromSmiles(h) if h else None for h in hyps]
                out["dev_validity"] = sum(m is not None for m in mols) / len(mols)
                exact = 0
                for m, ref in zip(mols, refs):
                    r = Chem.MolFromSmiles(ref)
                    if m is not None and r is not None and Chem.MolToInchi(m) == Chem.MolToInchi(r):
                        exact += 1
                out["dev_exact"] = exact / len(rows)
            else:
                out["dev_bleu4"] = corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps])
    model.train()
    return out


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


def native_bf16() -> bool:
    """Whether bf16 arithmetic is native here: a CUDA device that supports it, or a CPU with AVX512-BF16 or
    AMX. Elsewhere (e.g. an AVX2-only CPU) PyTorch emulates bf16 matmuls: a 10.5M-parameter T5 trained at
    about 40 tokens/s in bf16 autocast against 446 in float32 on one AVX2 core here."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    try:  # older PyTorch: read the CPU flags
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(config: TrainConfig) -> str:
    """The ``mixed_precision`` for accelerate that ``config.bf16`` means here: "bf16", or "no" (float32)."""
    if config.bf16 not in (True, False, "force"):
        raise ValueError(f"bf16 = {config.bf16!r}: use true, false or \"force\" (see t2m.train.TrainConfig)")
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
    from t2m.tokenizer import load_tokenizer, train_tokenizer

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


def train(config: TrainConfig, resume: bool = True) -> Path:
    """Train per ``config``; returns the directory of the final model (``<out_dir>/model``)."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    from t2m.batching import collate
    from t2m.modeling import make_config, model_class

    if config.threads:
        torch.set_num_threads(config.threads)
    # cpu=True where there is no GPU: otherwise accelerate ignores the torchrun environment on a CPU-only
    # machine and every process trains alone.
    precision = training_precision(config)
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum,
                              cpu=not torch.cuda.is_available())
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    data = load_training_data(config, out_dir)
    with accelerator.main_process_first():
        tokenizer = prepare_tokenizer(config, data, out_dir)

    checkpoints = checkpoint_dirs(out_dir) if resume else []
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0, "elapsed_s": 0.0, "setting": data.setting}
    if checkpoints:
        last = checkpoints[-1]
        model = model_class(last).from_pretrained(str(last))
        state.update(json.loads((last / "trainer_state.json").read_text()))
        accelerator.print(f"resuming from {last} (step {state['step']})")
    elif config.init_from:
        model = model_class(config.init_from).from_pretrained(config.init_from)
    else:
        model_config = make_config(config.preset, config.model_config, vocab_size=len(tokenizer),
                                   dropout_rate=config.dropout)
        model = model_class(model_config)(model_config)
    if config.copy_head and not getattr(model.config, "copy_head", False):
        from t2m.copy_model import with_copy_head

        model = with_copy_head(model)
    state["precision"] = precision
    model.generation_config = GenerationConfig(
        decoder_start_token_id=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=config.max_target_len,
    )
    model.train()

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    if checkpoints and (checkpoints[-1] / "optimizer.pt").is_file():
        saved = torch.load(checkpoints[-1] / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    dev_examples = []
    for i, row in enumerate(data.dev[:256]):
        dev_examples.append((data.source(i, TEXT2MOL, split="dev"), row["smiles"], TEXT2MOL))
        dev_examples.append((data.source(i, MOL2TEXT, split="dev"), row["description"], MOL2TEXT))
    dev_batches = [
        collate(*zip(*b), tokenizer.pad_token_id, config.length_multiple, config.max_source_len, config.max_target_len)
        for b in epoch_batches(tokenizer, dev_examples, config, epoch=-1)
    ]

    log_file = out_dir / "train_log.jsonl"
    progress = tqdm(total=config.max_steps, initial=state["step"], disable=not accelerator.is_main_process,
                    desc="train", dynamic_ncols=True)
    start_time = time.time() - state["elapsed_s"]
    window_tokens, window_start, window_loss, window_n = 0, time.time(), 0.0, 0
    world, rank = accelerator.num_processes, accelerator.process_index
    step_tokens = 0
    done = False

    def snapshot(final: bool = False) -> None:
        state["elapsed_s"] = time.time() - start_time
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            path = out_dir / "checkpoints" / f"step-{state['step']}"
            save_checkpoint(path, unwrapped, tokenizer, config, dict(state), optimizer, scheduler, data)
            for old in checkpoint_dirs(out_dir)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            if final:
                save_checkpoint(out_dir / "model", unwrapped, tokenizer, config, dict(state), data=data)
        accelerator.wait_for_everyone()

    while not done:
        examples = epoch_examples(data, config, state["epoch"])
        batches = epoch_batches(tokenizer, examples, config, state["epoch"])
        # each optimizer step consumes world * grad_accum batches; process `rank` takes its share
        per_step = world * config.grad_accum
        usable = len(batches) - len(batches) % per_step
        for index in range(state["batch_in_epoch"], usable, world):
            batch_pairs = batches[index + rank]
            batch = collate(*zip(*batch_pairs), tokenizer.pad_token_id, config.length_multiple,
                            config.max_source_len, config.max_target_len)
            with accelerator.accumulate(model), accelerator.autocast():
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            n_tokens = int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
            window_tokens += n_tokens * world
            step_tokens += n_tokens * world
            window_loss += float(loss.detach())
            window_n += 1
            state["batch_in_epoch"] = index + world
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            state["tokens"] += step_tokens
            step_tokens = 0
            progress.update(1)
            step = state["step"]
            if step % config.log_every == 0 or step == 1:
                elapsed = time.time() - window_start
                record = {"step": step, "epoch": state["epoch"], "loss": window_loss / max(window_n, 1),
                          "lr": scheduler.get_last_lr()[0], "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                          "elapsed_s": time.time() - start_time, "peak_rss_mb": peak_rss_mb()}
                progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if accelerator.is_main_process:
                    with log_file.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                window_tokens, window_start, window_loss, window_n = 0, time.time(), 0.0, 0
            if step % config.eval_every == 0 and accelerator.is_main_process:
                unwrapped = accelerator.unwrap_model(model)
                record = {"step": step, "dev_loss": dev_loss(unwrapped, dev_batches, accelerator.autocast)}
                record.update(quick_dev_metrics(unwrapped, tokenizer, data, config.quick_eval_rows, config.max_target_len))
                progress.write(json.dumps(record))
                with log_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            out_of_time = config.max_minutes is not None and (time.time() - start_time) > 60 * config.max_minutes
            if step >= config.max_steps or out_of_time:
                done = True
                break
            if step % config.save_every == 0:
                snapshot()
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    snapshot(final=True)
    progress.close()
    return out_dir / "model"
