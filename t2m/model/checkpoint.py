"""Model configurations and checkpoint loading.

A checkpoint is a Hugging Face directory: ``config.json`` + ``model.safetensors`` + a tokenizer
(``tokenizer.json`` or a T5 ``spiece.model``) + optional ``t2m.json`` naming the prompt style. It
loads with ``T5ForConditionalGeneration.from_pretrained`` anywhere; this module adds what t2m needs:
size presets, the prompt style of outside checkpoints (MolT5 is single-task and reads bare inputs;
Text+Chem T5 reads task prompts) and a refusal to unpickle weights unless the user opts in.
"""

from __future__ import annotations

import json
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2m.errors import OptionError
from t2m.options import DECODING_OFF, check_checkpoint_section
from t2m.tokenizer import load_tokenizer

T2M_META_FILE = "t2m.json"

# Shapes of T5 v1.1 (gated-GELU) and some sized for a 2-core CPU. transformers 5 always ties the LM
# head to the input embeddings for T5 and then rescales decoder outputs by d_model**-0.5 (original T5).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-tiny": dict(d_model=128, d_ff=512, d_kv=32, num_layers=2, num_decoder_layers=2, num_heads=4),
    "cpu-small": dict(d_model=256, d_ff=1024, d_kv=32, num_layers=4, num_decoder_layers=4, num_heads=8),
    "cpu-medium": dict(d_model=384, d_ff=1536, d_kv=48, num_layers=6, num_decoder_layers=6, num_heads=8),
    "t5-v1_1-small": dict(d_model=512, d_ff=1024, d_kv=64, num_layers=8, num_decoder_layers=8, num_heads=6),
    "t5-v1_1-base": dict(d_model=768, d_ff=2048, d_kv=64, num_layers=12, num_decoder_layers=12, num_heads=12),
}
_COMMON = dict(
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)


def make_config(preset: str | None = None, config_file: str | Path | None = None, vocab_size: int | None = None, **overrides):
    """A ``T5Config`` from a preset name or a JSON config file, with ``overrides`` on top."""
    from transformers import T5Config

    if config_file is not None:
        config = T5Config.from_json_file(str(config_file))
    else:
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}: choose one of {', '.join(PRESETS)} or pass a config file")
        config = T5Config(**_COMMON, **PRESETS[preset])
    if vocab_size is not None:
        config.vocab_size = vocab_size
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


# generate()'s repetition / length options, which a checkpoint's t2m.json recommends per task, and the value of
# each that means off. The "decoding" section may set any field of t2m.options.DecodingOptions and
# SmilesConstraints (t2m.options.CHECKPOINT_FIELDS).
DECODING_KEYS = tuple(DECODING_OFF)

# What a t2m-trained checkpoint recommends (t2m.json "decoding"; Translator applies it unless told otherwise):
# written by `t2m train` into every checkpoint (TrainConfig.decoding) and kept by `t2m ship`.
# Chosen on the dev slice. Captions (96 rows, a 1,100-step model) without it loop ("3,3,3,..."); with
# no_repeat_ngram_size=3 greedy BLEU-4 went 0.027 -> 0.154 and METEOR 0.120 -> 0.319, beam 5 BLEU-4
# 0.045 -> 0.157. SMILES (all 300 dev rows, beam 5, a 2,200-step model, SMILES syntax constraint on):
# no_repeat_ngram_size 0 / 8 / 12 gave validity 0.830 / 0.867 / 0.850 and Morgan FTS 0.2467 / 0.2600 /
# 0.2643 -- a runaway SMILES that repeats a motif ("OC(=O)OC(=O)...") to the length limit is cut off.
RECOMMENDED_DECODING = {"text2mol": {"no_repeat_ngram_size": 8}, "mol2text": {"no_repeat_ngram_size": 3}}


@dataclass
class CheckpointInfo:
    """What t2m knows about a loaded checkpoint."""

    path: str
    prompt_style: str = "textchem"
    tasks: tuple[str, ...] = ("text2mol", "mol2text")
    extra: dict[str, Any] = field(default_factory=dict)
    # per-task decoding defaults the checkpoint recommends (fields of t2m.options.DecodingOptions and
    # SmilesConstraints), e.g. {"mol2text": {"no_repeat_ngram_size": 3}}
    decoding: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per-task system ``t2m translate`` runs by default (t2m.json "system"): "model" or "retrieval" (the
    # ranked nearest pair's target, no model); tasks left out: "model"
    systems: dict[str, str] = field(default_factory=dict)

    def default_system(self, task: str) -> str:
        """The system ``t2m translate`` runs for ``task`` when ``--system`` is not given: the checkpoint's
        ``t2m.json`` "system" (``t2m ship`` writes the best one ``t2m bench`` measured), else "model"."""
        return self.systems.get(task, "model")

    def decoding_options(self, task: str, **given: Any) -> dict[str, Any]:
        """The repetition / length ``generate`` options (:data:`DECODING_KEYS`) a decoding of ``task`` uses:
        ``given`` values that are not None, else the checkpoint's recommendation; options that are off
        (penalty 1.0, n-gram size 0) left out."""
        recommended = {k: v for k, v in self.decoding.get(task, {}).items() if k in DECODING_KEYS}
        options = {**recommended, **{k: v for k, v in given.items() if v is not None}}
        return {k: v for k, v in options.items() if v is not None and v != DECODING_OFF.get(k)}


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Prompt style and tasks of a checkpoint: from ``t2m.json`` when present, else guessed.

    MolT5 checkpoints (``*molt5*`` names, or ``t5-v1_1`` fine-tunes such as ``caption2smiles``) are
    single-task and read bare inputs; anything else gets Text+Chem T5's prompts.
    """
    path = Path(path)
    meta_file = path / T2M_META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        return CheckpointInfo(
            path=str(path),
            prompt_style=meta.get("prompt_style", "textchem"),
            tasks=tuple(meta.get("tasks", ("text2mol", "mol2text"))),
            extra=meta,
            decoding=check_decoding_defaults(meta_file, meta.get("decoding", {})),
            systems=_default_systems(meta_file, meta),
        )
    name = path.resolve().name.lower()
    if "molt5" in name or "caption2smiles" in name or "smiles2caption" in name:
        tasks = ("text2mol",) if "caption2smiles" in name else ("mol2text",) if "smiles2caption" in name else ("text2mol", "mol2text")
        return CheckpointInfo(path=str(path), prompt_style="none", tasks=tasks)
    return CheckpointInfo(path=str(path))


SYSTEMS = ("model", "retrieval")


def _default_systems(meta_file: Path, meta: dict) -> dict[str, str]:
    """Validate the ``system`` section of ``t2m.json``: {task: "model" | "retrieval"}; retrieval needs the
    checkpoint's neighbour database ("neighbours")."""
    systems = meta.get("system", {})
    fix = '; e.g. "system": {"mol2text": "retrieval", "text2mol": "model"}'
    if not isinstance(systems, dict):
        raise ValueError(f'{meta_file}: "system" must map a task to a system{fix}')
    for task, system in systems.items():
        if task not in ("text2mol", "mol2text"):
            raise ValueError(f'{meta_file}: "system" -> {task!r}: tasks are text2mol and mol2text{fix}')
        if system not in SYSTEMS:
            raise ValueError(f'{meta_file}: "system" -> {task!r}: {system!r} is not one of {", ".join(SYSTEMS)}{fix}')
        if system == "retrieval" and not meta.get("neighbours"):
            raise ValueError(f'{meta_file}: "system" -> {task!r}: retrieval needs a neighbour database ("neighbours" '
                             'with its "database"); remove the entry or add the database')
    return dict(systems)


def check_decoding_defaults(meta_file: Path | str, decoding: Any) -> dict[str, dict[str, Any]]:
    """Validate the ``decoding`` section of ``t2m.json`` (or of a training config, ``meta_file`` naming where it
    is): {task: {option: value}}, options being fields of :class:`t2m.options.DecodingOptions` and
    :class:`t2m.options.SmilesConstraints`. Returns it."""
    if not isinstance(decoding, dict) or not all(isinstance(v, dict) for v in decoding.values()):
        raise ValueError(f'{meta_file}: "decoding" must map a task to decoding options, e.g. '
                         '{"mol2text": {"no_repeat_ngram_size": 3}}')
    for task, options in decoding.items():
        if task not in ("text2mol", "mol2text"):
            raise ValueError(f'{meta_file}: "decoding" -> {task!r}: tasks are text2mol and mol2text')
        try:
            check_checkpoint_section(options)
        except (TypeError, ValueError) as err:
            raise ValueError(f'{meta_file}: "decoding" -> {task!r}: {err}') from None
    return decoding


def write_checkpoint_info(path: str | Path, prompt_style: str = "textchem", **extra) -> None:
    meta = {"prompt_style": prompt_style, "tasks": ["text2mol", "mol2text"], **extra}
    Path(path, T2M_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _check_weights(path: Path, allow_pickle: bool) -> None:
    has_safetensors = any(path.glob("*.safetensors"))
    pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
    if not has_safetensors and pickled and not allow_pickle:
        raise PermissionError(
            f"{path}: the weights are only pickled ({', '.join(sorted(pickled))}); unpickling a file from "
            "elsewhere can run arbitrary code. If you trust its source, pass allow_pickle=True, or convert it "
            "once to safetensors."
        )
    if not has_safetensors and not pickled:
        raise FileNotFoundError(f"{path}: no model weights (model.safetensors or pytorch_model.bin) in this directory")


def model_class(config_or_path: Any):
    """The model class of a checkpoint folder or ``T5Config``: :class:`t2m.model.copy_head.T5CopyForConditionalGeneration`
    when its config says ``copy_head: true``, else ``T5ForConditionalGeneration``."""
    from transformers import T5ForConditionalGeneration

    if isinstance(config_or_path, (str, Path)):
        config_file = Path(config_or_path) / "config.json"
        copy = bool(json.loads(config_file.read_text()).get("copy_head")) if config_file.is_file() else False
    else:
        copy = bool(getattr(config_or_path, "copy_head", False))
    if copy:
        from t2m.model.copy_head import T5CopyForConditionalGeneration

        return T5CopyForConditionalGeneration
    return T5ForConditionalGeneration


def load_model(path: str | Path, allow_pickle: bool = False, device: str | None = None, prompt_style: str | None = None):
    """Load ``(model, tokenizer, info)`` from a checkpoint directory.

    ``prompt_style`` overrides the stored or guessed one ("textchem" or "none").
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no config.json); pass a directory saved by `t2m train` or `save_pretrained`")
    _check_weights(path, allow_pickle)
    import torch

    # float32 whatever the stored dtype (the shipped weights are stored in bf16): bf16 arithmetic is emulated,
    # and about 10x slower, on CPUs without AVX512-BF16 or AMX
    model = model_class(path).from_pretrained(str(path), use_safetensors=not allow_pickle or None, dtype=torch.float32)
    model.eval()
    if device:
        model.to(device)
    tokenizer = load_tokenizer(path)
    info = read_checkpoint_info(path)
    if prompt_style is not None:
        info.prompt_style = prompt_style
    return model, tokenizer, info


def default_model_dir() -> Path:
    """The small model that ships inside the package."""
    return Path(str(resources.files("t2m") / "default_model")).resolve()  # t2m/default_model, installed or not


CHECKPOINT_FIX = "give the folder `t2m train` wrote (config.json, weights, tokenizer)"


def checkpoint_dir(path: str | Path | None, allow_pickle: bool = False, *, field: str = "model",
                   fix: str = f"{CHECKPOINT_FIX}, or leave model=DIR out for the shipped model") -> Path:
    """The checkpoint folder ``path`` (None: the shipped model), checked before anything loads: an
    :class:`t2m.errors.OptionError` naming option ``field`` and ``fix`` (what to do instead) when it is none
    -- no folder, no config.json, no weights, or pickled weights without ``allow_pickle``."""
    if path is None:
        path = default_model_dir()
        if not (path / "config.json").is_file():
            raise OptionError(f"{path}: the shipped model is not installed; pass a checkpoint folder with {field}=DIR")
        return path
    path = Path(path)
    if not path.exists():
        raise OptionError(f"{field}={path}: no such folder; {fix}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise OptionError(f"{field}={path}: not a checkpoint folder (no config.json); {fix}")
    has_safe = any(path.glob("*.safetensors"))
    if not has_safe and not any(path.glob("pytorch_model*.bin")):
        raise OptionError(f"{field}={path}: no weights (model.safetensors) in the folder; {fix}")
    if not has_safe and not allow_pickle:
        raise OptionError(f"{field}={path}: only pickled weights (pytorch_model.bin); pass allow_pickle=True if you "
                          "trust the checkpoint")
    return path
