"""Turning (source, target) texts into padded tensors, with lengths bucketed to a few shapes.

On CPU every distinct batch shape costs allocator memory that is never returned (a small T5 in bf16
autocast was seen to grow to 11 GB with free shapes); rounding lengths up to a bucket keeps the
number of shapes small.
"""

from __future__ import annotations

from typing import Sequence

from t2m.tasks import add_prompt

LABEL_PAD = -100
# batch size of teacher-forced passes (datastore builds, tuning, the λ sweep); decoding has its own
# (t2m.options.default_batch_size)
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LEN = 512  # tokens of a source or a target
LENGTH_MULTIPLE = 32  # padded lengths are multiples of this (collate, encode_batch)


def bucket_length(n: int, multiple: int = 32, maximum: int | None = None) -> int:
    """Round ``n`` up to a multiple of ``multiple`` (capped at ``maximum``)."""
    n = max(1, ((n + multiple - 1) // multiple) * multiple)
    return min(n, maximum) if maximum else n


# Activation memory of one training forward + backward, fitted on the cpu-small T5 with the copy head (bf16
# autocast, peak resident memory of a first step, 5 shapes from 8x(128+256) to 16x(512+256), within 40 MB):
# bytes per source token per encoder layer and d_ff unit, per target token per decoder layer and d_ff unit,
# per target token and vocabulary entry, and per attention score (head x layer x query x key).
SOURCE_TOKEN_BYTES = 34
TARGET_TOKEN_BYTES = 56
VOCAB_BYTES = 12
SCORE_BYTES = 11.5
FLOAT32_FACTOR = 1.3  # float32 activations take about this much more


def activation_mb(rows: int, source_len: int, target_len: int, model_config, precision: str = "bf16") -> float:
    """Estimated activation memory (MiB) of one training step on ``rows`` pairs padded to these lengths."""
    c = model_config
    enc, dec = c.num_layers, c.num_decoder_layers or c.num_layers
    tokens = (source_len * enc * c.d_ff * SOURCE_TOKEN_BYTES + target_len * dec * c.d_ff * TARGET_TOKEN_BYTES
              + target_len * c.vocab_size * VOCAB_BYTES)
    scores = c.num_heads * (enc * source_len**2 + dec * (target_len**2 + target_len * source_len)) * SCORE_BYTES
    return rows * (tokens * (FLOAT32_FACTOR if precision != "bf16" else 1.0) + scores) / 2**20


def micro_batches(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], budget_mb: float | None, model_config,
                  precision: str = "bf16", multiple: int = 32, max_source_len: int = 512,
                  max_target_len: int = 512) -> list[list]:
    """``pairs`` (one batch of source and target ids) as micro-batches, each within ``budget_mb`` of
    estimated activation memory (:func:`activation_mb` at its padded lengths): the pairs sorted by length,
    then cut greedily. One part, in the batch's order, when the whole batch fits (or ``budget_mb`` is None)."""

    def cost(part) -> float:
        source = bucket_length(max(len(p[0]) for p in part), multiple, max_source_len)
        target = bucket_length(max(len(p[1]) for p in part), multiple, max_target_len)
        return activation_mb(len(part), source, target, model_config, precision)

    if budget_mb is None or cost(pairs) <= budget_mb:
        return [list(pairs)]
    parts: list[list] = []
    for pair in sorted(pairs, key=lambda p: (len(p[0]), len(p[1])), reverse=True):
        if parts and cost(parts[-1] + [pair]) <= budget_mb:
            parts[-1].append(pair)
        else:
            parts.append([pair])
    return parts


def pad_ids(rows: Sequence[Sequence[int]], length: int, pad: int):
    import torch

    out = torch.full((len(rows), length), pad, dtype=torch.long)  # (batch, length)
    for i, row in enumerate(rows):
        row = list(row)[:length]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


ENCODE_CHUNK = 256  # texts per tokenizer call


def encode_sources(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids of each text with the closing ``</s>``, truncated to ``max_len`` (``</s>`` kept).

    Encoded ``ENCODE_CHUNK`` texts at a time: a fast tokenizer's call on 10k texts at once leaves its
    working memory with the process (+330 MB resident for the 9.6k inputs of a training epoch with
    neighbours, against +100 MB in chunks)."""
    eos = tokenizer.eos_token_id
    texts = list(texts)
    out = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        ids = tokenizer(texts[start : start + ENCODE_CHUNK], add_special_tokens=False,
                        return_attention_mask=False)["input_ids"]
        out.extend(row[: max_len - 1] + [eos] for row in ids)
    return out


def collate(source_ids: Sequence[Sequence[int]], target_ids: Sequence[Sequence[int]] | None, pad_id: int,
            multiple: int = LENGTH_MULTIPLE, max_source_len: int = 512, max_target_len: int = 512) -> dict:
    """Pad to bucketed lengths: ``input_ids``, ``attention_mask`` and (if targets) ``labels`` (-100 padded)."""
    src_len = bucket_length(max(len(r) for r in source_ids), multiple, max_source_len)
    input_ids = pad_ids(source_ids, src_len, pad_id)  # (batch, src_len)
    batch = {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}
    if target_ids is not None:
        tgt_len = bucket_length(max(len(r) for r in target_ids), multiple, max_target_len)
        batch["labels"] = pad_ids(target_ids, tgt_len, LABEL_PAD)  # (batch, tgt_len)
    return batch


def encode_batch(tokenizer, sources: Sequence[str], targets: Sequence[str] | None, task: str | Sequence[str],
                 prompt_style: str = "textchem", max_source_len: int = 512, max_target_len: int = 512,
                 multiple: int = LENGTH_MULTIPLE) -> dict:
    """Prompt, tokenize and pad a batch. ``task`` is one task for all rows or one per row."""
    tasks = [task] * len(sources) if isinstance(task, str) else list(task)
    prompted = [add_prompt(s, t, prompt_style) for s, t in zip(sources, tasks)]
    source_ids = encode_sources(tokenizer, prompted, max_source_len)
    target_ids = encode_sources(tokenizer, targets, max_target_len) if targets is not None else None
    return collate(source_ids, target_ids, tokenizer.pad_token_id, multiple, max_source_len, max_target_len)
