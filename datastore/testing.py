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


class Mixture:
    """A mixture of isotropic Gaussians in ``dim`` dimensions: ``centres`` (clusters, dim), ``weights``
    (clusters,) summing to 1, ``spreads`` (clusters,): each cluster's standard deviation per dimension.
    Made at random (:func:`mixture_keys`) or fitted to real keys (:func:`fit_mixture`); saved as ``.npz``."""

    def __init__(self, centres, weights, spreads) -> None:
        import numpy as np

        self.centres = np.asarray(centres, dtype=np.float32)
        self.weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.spreads = np.broadcast_to(np.asarray(spreads, dtype=np.float32), self.weights.shape).copy()

    @property
    def dim(self) -> int:
        return int(self.centres.shape[1])

    def draw(self, count: int, rng, out=None, block: int = 65_536):
        """(count, dim) float16 draws, written into ``out`` a block at a time when given."""
        import numpy as np

        keys = np.empty((count, self.dim), dtype=np.float16) if out is None else out
        for start in range(0, count, block):
            n = min(block, count - start)
            picks = rng.choice(len(self.weights), size=n, p=self.weights)
            noise = rng.standard_normal((n, self.dim), dtype=np.float32) * self.spreads[picks, None]
            keys[start:start + n] = self.centres[picks] + noise
        return keys

    def save(self, path) -> None:
        import numpy as np

        with open(path, "wb") as handle:
            np.savez(handle, centres=self.centres, weights=self.weights, spreads=self.spreads)

    @classmethod
    def load(cls, path) -> "Mixture":
        import numpy as np

        with np.load(path) as data:
            return cls(data["centres"], data["weights"], data["spreads"])


def _kmeans_plus_plus(data, clusters: int, rng, candidates: int = 20):
    """k-means++ seeds (Arthur & Vassilvitskii 2007) from at most ``candidates`` points per cluster of
    ``data``: each next seed drawn with probability proportional to its squared distance to the nearest
    seed so far, so that far-apart small clusters get a seed (random seeds leave them out)."""
    import numpy as np

    pool = data[rng.choice(len(data), size=min(len(data), candidates * clusters), replace=False)]
    seeds = np.empty((clusters, data.shape[1]), dtype=np.float32)
    seeds[0] = pool[rng.integers(len(pool))]
    nearest = ((pool - seeds[0]) ** 2).sum(1)
    for i in range(1, clusters):
        seeds[i] = pool[rng.choice(len(pool), p=nearest / nearest.sum())] if nearest.sum() > 0 else pool[i]
        nearest = np.minimum(nearest, ((pool - seeds[i]) ** 2).sum(1))
    return seeds


def fit_mixture(keys, clusters: int = 2048, sample: int = 200_000, seed: int = 0, iterations: int = 20,
                redo: int = 1) -> Mixture:
    """A :class:`Mixture` fitted to ``keys`` (e.g. a real store's memory-mapped ``keys.npy``): k-means
    centres of a random sample, each cluster's share of the sample as its weight, and its root mean squared
    distance to its centre per dimension as its spread. k-means++ seeds; ``redo`` runs, the best kept."""
    import faiss
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(keys), size=min(sample, len(keys)), replace=False))
    data = np.ascontiguousarray(keys[picks], dtype=np.float32)
    kmeans = faiss.Kmeans(data.shape[1], clusters, niter=iterations, seed=seed, nredo=redo,
                          max_points_per_centroid=10**9)
    kmeans.train(data, init_centroids=_kmeans_plus_plus(data, clusters, rng))
    distances, assigned = kmeans.index.search(data, 1)
    counts = np.bincount(assigned[:, 0], minlength=clusters).astype(np.float64)
    squared = np.bincount(assigned[:, 0], weights=distances[:, 0], minlength=clusters)
    spreads = np.sqrt(squared / np.maximum(counts, 1) / data.shape[1])
    keep = counts > 0
    return Mixture(kmeans.centroids[keep], counts[keep], spreads[keep])


def mixture_keys(count: int, dim: int, clusters: int = 256, spread: float = 0.35, seed: int = 0,
                 block: int = 65_536, out=None, draw_seed: int | None = None, mixture: Mixture | None = None):
    """(count, dim) float16 keys drawn from a mixture of ``clusters`` isotropic Gaussians (unit-variance
    centres, each ``spread`` wide, unequal weights: :meth:`Mixture.random`), as decoder states cluster --
    or from ``mixture`` (e.g. :func:`fit_mixture` of a real store's keys) when given; written into ``out``
    (an array or memmap of that shape, e.g. ``np.lib.format.open_memmap``) a block at a time when given.
    ``seed`` chooses the mixture; ``draw_seed`` (default: go on with ``seed``'s generator) other draws of it,
    e.g. queries."""
    import numpy as np

    if mixture is None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        mixture = Mixture(centres, rng.dirichlet(np.full(clusters, 0.5)), spread)
    else:
        rng = np.random.default_rng(seed)
    rng = rng if draw_seed is None else np.random.default_rng([seed, draw_seed])
    return mixture.draw(count, rng, out=out, block=block)


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
