"""Everything that defines a training run (:class:`TrainConfig`): the keys of a ``t2m train`` config file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    length_multiple: int = 8
    batch_size: int = 32
    grad_accum: int = 1
    smiles_augment: float = 0.5  # probability of a randomised SMILES as mol2text source
    aux_unlabeled_per_epoch: int = 0  # smiles2smiles examples per epoch from the unlabeled molecules
    # tagged back-translation: a TSV/JSONL of synthetic (description, SMILES) pairs -- real molecules captioned
    # by the mol2text direction -- trained as text2mol only, the source marked with SYNTHETIC_TAG; pairs of a
    # training or dev molecule are dropped. `back_translations_per_epoch` drawn each epoch (0: all).
    back_translations: str | None = None
    back_translations_per_epoch: int = 0
    # retrieval-augmented inputs (t2m.neighbours.database): each source carries its `neighbours` nearest training pairs
    # (never itself nor the same molecule), drawn each epoch from its `neighbour_pool` nearest
    neighbours: int = 0
    neighbour_pool: int = 4
    neighbour_p_nearest: float = 0.5  # probability of showing the nearest ones rather than a draw from the pool
    show_similarity: bool = True
    copy_head: bool = False  # pointer-generator head (t2m.model.copy_head): copy tokens from the input
    # what every checkpoint carries so that `t2m translate --model CHECKPOINT` decodes as `t2m ship` makes it:
    # per-task decoding defaults (t2m.json "decoding"; None: t2m.model.checkpoint.RECOMMENDED_DECODING, {}: none), and,
    # with neighbours, the neighbour rankers (t2m ranker) fitted on the training pairs; None: those of
    # `init_from` when fitted on the same pairs, else none (the run says so when it starts)
    decoding: dict[str, dict[str, Any]] | None = None
    ranker: str | None = None
    # optimisation
    lr: float = 7e-4
    weight_decay: float = 0.01
    warmup_steps: int = 300
    max_steps: int = 10000
    min_lr_ratio: float = 0.05
    max_minutes: float | None = None  # stop (and save) after this much wall time of one invocation (a piece)
    # stop (and save) at this step while the learning-rate schedule still follows max_steps: a run trained in
    # pieces, or a recipe reproducing a run that was stopped early
    stop_at_step: int | None = None
    # bf16 autocast where the hardware has native bf16 (CUDA, or a CPU with AVX512-BF16 or AMX); on other
    # CPUs bf16 is emulated and far slower than float32, so training falls back to float32 with a warning.
    # "force" uses bf16 regardless.
    bf16: bool | str = True
    # a batch whose forward + backward would take more activation memory than this (MiB, estimated by
    # t2m.decoding.batching.activation_mb) is split into micro-batches, each padded to its own length; the optimizer
    # step and the loss (token-weighted) stay those of the whole batch. None: never split.
    micro_batch_mb: float | None = 1500
    # t2m.model.kernels: dropout from 16 random bits per element and attention without a materialised
    # mask (the same function, 1.5x faster steps here); false: transformers' own modules
    fast_kernels: bool = True
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
            raise ValueError(f"{path}: unknown training option(s) {', '.join(sorted(unknown))}; see t2m.training.trainer.TrainConfig")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
