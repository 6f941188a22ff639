"""Small offline stand-ins for tests and benchmarks: a tiny random T5 and a BPE tokenizer trained on the
given texts (no downloads), and a reader for the first rows of a headed TSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 600):
    """A ``PreTrainedTokenizerFast`` (BPE over Metaspace pieces, pad=0, eos=1, unk=2, ``</s>`` appended)
    trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(vocab_size: int, d_model: int = 32, num_layers: int = 2, num_heads: int = 4, d_ff: int = 64,
            seed: int = 0, tie_word_embeddings: bool = True):
    """A randomly initialised ``T5ForConditionalGeneration`` (eval mode) of the given size."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // num_heads, d_ff=d_ff,
                      num_layers=num_layers, num_heads=num_heads, dropout_rate=0.0,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      tie_word_embeddings=tie_word_embeddings)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval()


def read_tsv_rows(path: str | Path, limit: int | None = None, unescape_backslashes: bool = True) -> list[dict]:
    """The first ``limit`` rows of a tab-separated file with a header line, quoting off; ``\\\\`` in a
    field becomes ``\\`` when ``unescape_backslashes`` (the ChEBI-20 files escape backslashes)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if unescape_backslashes:
                row = {key: value.replace("\\\\", "\\") for key, value in row.items()}
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    return rows


def tiny_pairs(tsv_path: str | Path, n_rows: int, source_column: str, target_column: str,
               vocab_size: int = 400, d_model: int = 32, num_layers: int = 2, seed: int = 0):
    """(tokenizer, model, sources, targets) for tests: the first ``n_rows`` rows of ``tsv_path``, a BPE
    tokenizer trained on them, and a tiny random T5 over that vocabulary."""
    rows = read_tsv_rows(tsv_path, n_rows)
    sources = [row[source_column] for row in rows]
    targets = [row[target_column] for row in rows]
    tokenizer = train_tokenizer(sources + targets, vocab_size)
    model = tiny_t5(len(tokenizer), d_model=d_model, num_layers=num_layers, seed=seed)
    return tokenizer, model, sources, targets


def mixture_keys(count: int, dim: int, clusters: int = 256, spread: float = 0.35, seed: int = 0,
                 block: int = 65_536, out=None, draw_seed: int | None = None):
    """(count, dim) float16 keys drawn from a mixture of ``clusters`` isotropic Gaussians (unit-variance
    centres, each ``spread`` wide, unequal weights), as decoder states cluster; written into ``out`` (an
    array or memmap of that shape, e.g. ``np.lib.format.open_memmap``) a block at a time when given.
    ``seed`` chooses the mixture; ``draw_seed`` (default: go on with ``seed``'s generator) other draws of it,
    e.g. queries."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    weights = rng.dirichlet(np.full(clusters, 0.5))
    rng = rng if draw_seed is None else np.random.default_rng([seed, draw_seed])
    keys = np.empty((count, dim), dtype=np.float16) if out is None else out
    for start in range(0, count, block):
        n = min(block, count - start)
        picks = rng.choice(clusters, size=n, p=weights)
        keys[start:start + n] = centres[picks] + spread * rng.standard_normal((n, dim), dtype=np.float32)
    return keys


def run_in_two_processes(target, args: tuple, timeout: float) -> list:
    """Start two spawned processes running ``target(*args, barrier, results)`` -- ``barrier`` lets them act at
    once, each puts one result on ``results`` -- and return both results (what two ``--jobs`` workers on one
    store see)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=target, args=(*args, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    found = [results.get(timeout=timeout) for _ in workers]
    for worker in workers:
        worker.join(60)
    return found
