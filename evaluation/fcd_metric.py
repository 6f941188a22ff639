"""Fréchet ChemNet Distance as MolT5 computes it with the ``fcd`` package (pinned: values depend on it).

MolT5: ``get_fcd([canonical ground truths], [canonical outputs], load_ref_model())`` after dropping the
SMILES that do not canonicalise (an empty output is sent as ``"[]"`` and so dropped). ``fcd`` pads every
SMILES of one list to ``max(350, longest + 1)`` one-hot positions -- per list, so the ground-truth list
of ChEBI-20's test split (longest canonical SMILES 1,122 characters) runs ChemNet's LSTMs over 1,123
positions -- and batches 128 at a time. This module does the same computation (same one-hot input
tensor, bit for bit, ``np.mean``/``np.cov``, fcd's own ``calculate_frechet_distance``) but runs a repeated
SMILES once, lets a second process take half of the batches, and caches the statistics of a reference list.
A row's activation does not depend on the other rows of its batch (tested), so batches may be any size
(64 here: half the memory of fcd's 128, as fast). The one-hot input is built with one numpy scatter per
batch instead of fcd's per-SMILES float64 arrays (0.15-0.4 ms a SMILES, up to 1 s of CPU on a 3,300-row
file); see also :func:`reuse_freed_memory`.

The distance itself: fcd computes ``|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`` with
``scipy.linalg.sqrtm`` (a Schur decomposition of a 512x512 matrix: 1-3 s here). Since ``S1 S2`` is similar
to the symmetric ``S1^1/2 S2 S1^1/2``, the trace of its square root is the sum of the square roots of that
matrix's eigenvalues (``eigvalsh``, ~0.1 s once ``S1^1/2`` of the reference is known, which is cached with
the reference statistics). On MolT5's prediction files the two agree to 1e-11.
"""

from __future__ import annotations

import functools
import io
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from evaluation.cache import MIN_CACHED_REFERENCES, atomic_write_bytes, cache_path, strings_digest

BATCH_SIZE = 128  # fcd.get_predictions' default
CHEMNET_BATCH = 64  # what we run: rows are bit-identical whatever the batch (see module docstring)
DEFAULT_PAD_LEN = 350


def pad_length(smiles: Sequence[str]) -> int:
    """fcd's SmilesDataset pad length for one list."""
    return max(DEFAULT_PAD_LEN, max(len(s) for s in smiles) + 1)


def _torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def reuse_freed_memory():
    """glibc malloc: serve every allocation from the heap and keep freed memory there; returns a function
    restoring glibc's defaults (a no-op where there is no glibc ``mallopt``).

    ChemNet's LSTM allocates tens of MB per batch. By default glibc maps each such block afresh and unmaps
    it on free, so every batch faults ~100 MB of new pages in, 4 kB at a time (~10% of ChemNet's time, in
    the kernel); kept in the heap, the memory of one batch is reused by the next. Numbers are unchanged."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return lambda: None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>

    def restore() -> None:
        mallopt(m_mmap_max, 65536)  # glibc's defaults
        mallopt(m_trim_threshold, 128 * 1024)

    if not mallopt(m_mmap_max, 0):  # not glibc (musl's mallopt does nothing and says so)
        return lambda: None
    mallopt(m_trim_threshold, 2**31 - 1)
    return restore


@functools.cache
def _fcd_vocabulary() -> tuple[dict[str, int], int, int]:
    """fcd's symbol -> index map, the index of unknown symbols, and the vocabulary size (fcd.utils' own)."""
    from fcd import utils

    c2i = vars(utils)["__vocab_c2i"]  # module globals (not name-mangled); fcd's version is pinned
    return c2i, c2i["X"], len(vars(utils)["__vocab"])


def one_hot_batch(smiles: Sequence[str], pad_len: int):
    """The float32 tensor (len(smiles), 35 symbols, pad_len) that fcd feeds ChemNet for these SMILES.

    fcd: ``get_one_hot(s + ".")`` per SMILES (float64, 1 at each token), stacked, divided by the vocabulary
    size, then ``torch.from_numpy(...).transpose(1, 2).float()``. Here the same tokens (fcd's ``tokenize``)
    are scattered into one float32 array holding ``float32(1.0 / 35)`` -- the value fcd's division and
    ``.float()`` produce -- with the same (transposed-view) memory layout."""
    import torch
    from fcd.utils import tokenize

    c2i, unk, size = _fcd_vocabulary()
    rows: list[int] = []
    cols: list[int] = []
    symbols: list[int] = []
    for i, s in enumerate(smiles):
        if len(s) + 1 > pad_len:  # fcd's get_one_hot asserts the same
            raise ValueError(f"pad length {pad_len} is shorter than SMILES {s!r} plus its end token")
        ids = [c2i.get(token, unk) for token in tokenize(s + ".")]
        rows.extend([i] * len(ids))
        cols.extend(range(len(ids)))
        symbols.extend(ids)
    batch = np.zeros((len(smiles), pad_len, size), dtype=np.float32)
    batch[rows, cols, symbols] = 1.0 / size
    return torch.from_numpy(batch).transpose(1, 2)


def chemnet_activations(smiles: Sequence[str], pad_len: int, threads: int = 1) -> np.ndarray:
    """ChemNet activations (len(smiles), 512) float32, each row as fcd.get_predictions computes it."""
    import torch
    from fcd import load_ref_model

    _torch_threads(threads)
    model = load_ref_model()  # lru-cached by fcd: loaded once per process (and inherited by forked workers)
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(smiles), CHEMNET_BATCH):
            x = one_hot_batch(smiles[start : start + CHEMNET_BATCH], pad_len)  # (batch, 35 symbols, pad_len)
            out.append(model(x).numpy().astype(np.float32))  # (batch, 512)
    if not out:
        return np.zeros((0, 512), dtype=np.float32)
    return np.vstack(out)


def activations_in_two_processes(smiles: Sequence[str], executor=None, threads: int = 1) -> np.ndarray:
    """Activations for one list; with an executor (a forked process holding torch) it takes the second half.

    A SMILES string repeated in the list is run once: a row's activation depends only on its string and
    the list's pad length, not on the other rows of its batch (checked: batches of 16 to 1,024 give
    bit-identical rows), so the statistics are exactly fcd's."""
    pad = pad_length(smiles)
    position: dict[str, int] = {}
    rows = [position.setdefault(s, len(position)) for s in smiles]
    unique = list(position)
    n_batches = -(-len(unique) // CHEMNET_BATCH)
    if executor is None or n_batches < 2:
        return chemnet_activations(unique, pad, threads)[rows]
    split = (n_batches // 2) * CHEMNET_BATCH
    future = executor.submit(chemnet_activations, unique[split:], pad, 1)
    first = chemnet_activations(unique[:split], pad, 1)
    return np.vstack([first, future.result()])[rows]


def statistics(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) exactly as fcd.get_fcd computes them."""
    return np.mean(activations, axis=0), np.cov(activations.T)


def symmetric_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Principal square root of a covariance matrix (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(
    stats1: tuple[np.ndarray, np.ndarray], stats2: tuple[np.ndarray, np.ndarray], sqrt_sigma1: np.ndarray | None = None
) -> float:
    """fcd's calculate_frechet_distance, with tr(sqrtm(S1 S2)) from eigenvalues (see module docstring)."""
    (mu1, sigma1), (mu2, sigma2) = stats1, stats2
    root1 = symmetric_sqrt(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    m = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _versions() -> list[str]:
    from importlib.metadata import version

    return [f"fcd={version('fcd')}", f"torch={version('torch')}", f"numpy={np.__version__}"]


def reference_statistics(
    canonical_references: Sequence[str], executor=None, use_cache: bool = True, threads: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, covariance, covariance^1/2) of a reference list, from the cache when this exact list was seen."""
    use_cache = use_cache and len(canonical_references) >= MIN_CACHED_REFERENCES
    path = cache_path("fcd", [strings_digest(list(canonical_references)), *_versions()], "npz")
    if use_cache and path.is_file():
        try:
            with np.load(path) as z:
                return z["mu"], z["sigma"], z["sqrt_sigma"]
        except (OSError, ValueError, KeyError):
            pass
    if use_cache:
        print(
            f"t2m eval: computing ChemNet statistics of {len(canonical_references)} references (cached afterwards)",
            file=sys.stderr,
        )
    mu, sigma = statistics(activations_in_two_processes(canonical_references, executor, threads))
    root = symmetric_sqrt(sigma)
    if use_cache:
        buf = io.BytesIO()
        np.savez(buf, mu=mu, sigma=sigma, sqrt_sigma=root)
        atomic_write_bytes(path, buf.getvalue())
    return mu, sigma, root


def _one_blas_thread():
    # numpy's OpenBLAS spins its threads: on 2 busy cores a 512x512 eigh goes from 0.1 s to several seconds
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def fcd_score(
    canonical_references: Sequence[str],
    canonical_outputs: Sequence[str],
    executor=None,
    use_cache: bool = True,
    threads: int = 1,
) -> float:
    """FCD between two lists of canonical SMILES (Nones already dropped); NaN if either list is empty."""
    if not canonical_references or not canonical_outputs:
        return float("nan")
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore")
        mu1, sigma1, root1 = reference_statistics(canonical_references, executor, use_cache, threads)
        out_stats = statistics(activations_in_two_processes(canonical_outputs, executor, threads))
        return frechet_distance((mu1, sigma1), out_stats, root1)
