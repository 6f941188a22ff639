"""text2mol metrics (description -> SMILES): MolT5-exact by default, or ``strict``.

MolT5 mode computes what MolT5's ``mol_translation_metrics.py``, ``fingerprint_metrics.py`` and
``fcd_metric.py`` compute, quirks included:

- ``bleu``: nltk corpus BLEU-4 over the characters of the SMILES;
- ``exact_match``: RDKit InChI of output == InChI of reference (two failed/empty InChIs are "equal");
- ``levenshtein``: mean edit distance between the raw strings, over all rows;
- ``validity``: ``1 - bad/N``, a row being bad when the output or the reference does not parse or InChI
  raises; an **empty output parses** (to an empty molecule) and so counts as valid;
- ``maccs_fts``, ``rdk_fts``, ``morgan_fts``: mean Tanimoto similarity of MACCS keys, ``Chem.RDKFingerprint``
  and Morgan radius-2 count fingerprints, **averaged over the rows whose output parses only** (a reference
  that does not parse would crash MolT5's script; here such rows are left out, with a note);
- ``fcd``: see :mod:`evaluation.fcd_metric`.

``strict=True`` fixes the quirks: an empty output, or one that parses to an empty molecule, is invalid;
exact match also needs a non-empty InChI; the similarities average over **all** rows, an invalid output
counting 0. BLEU, Levenshtein and FCD are the same in both modes (FCD can only use parsable outputs).

Also ``sacrebleu``: sacrebleu's corpus BLEU with ``tokenize='char'`` (0-100), with its own signature.

Each metric is computed by its function in :mod:`evaluation.metrics` (FCD in :mod:`evaluation.fcd_metric`);
this module runs them: RDKit work on forked worker lanes for large inputs, ChemNet beside it, the
reference-side cache, the signature and per-row statistics.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Sequence

from evaluation.result import EvalResult, PhaseTimer
from evaluation.signature import build_signature, package_version

CHUNK_ROWS = 128
TAIL_CHUNK_ROWS = 32  # the last 4 * CHUNK_ROWS rows go in smaller chunks, so that the two lanes end together
METRIC_KEYS = (
    "bleu",
    "exact_match",
    "levenshtein",
    "maccs_fts",
    "rdk_fts",
    "morgan_fts",
    "validity",
    "fcd",
    "sacrebleu",
)


def _reference_records(references: Sequence[str], use_cache: bool):
    """{reference SMILES: MolRecord} from the cache (or {}), and the cache path to write to (None: no caching)."""
    import pickle

    from evaluation.cache import MIN_CACHED_REFERENCES, cache_path, strings_digest

    if not use_cache or len(references) < MIN_CACHED_REFERENCES:
        return {}, None
    path = cache_path(
        "references", [strings_digest(sorted(set(references))), f"rdkit={package_version('rdkit')}"], "pkl"
    )
    if path.is_file():
        try:
            with open(path, "rb") as f:
                return pickle.load(f), path
        except Exception:  # unreadable cache: recompute
            pass
    return {}, path


def _save_reference_records(path, records: dict) -> None:
    import pickle

    from evaluation.cache import atomic_write_bytes

    atomic_write_bytes(path, pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))


def _import_fcd_model() -> int:
    """Import torch and load ChemNet with torch on one thread; returns the thread count to restore."""
    # before torch starts its OpenMP pool: threads that sleep when idle instead of spinning, so that a busy
    # machine (or our own second process) does not slow ChemNet down several-fold
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    # one thread per process (two processes share the work); also keeps torch's OpenMP pool from starting
    # before lane 2 is forked
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    from fcd import load_ref_model

    load_ref_model()
    return previous


class _MoleculeScoring:
    """RDKit work on the rows: in-process for small inputs, else on two forked lanes (see evaluation.workers).

    Lane 1 starts at construction; :meth:`finish` adds lane 2 (after the caller imported torch, if FCD is
    wanted, so that lane 2 inherits it) and returns (row scores, reference records, lane 2 or None).
    """

    def __init__(self, references: list[str], outputs: list[str], known: dict, workers: int):
        from evaluation.workers import PARALLEL_MIN_ROWS, ChunkFeeder, fork_lane

        # an output equal to some cached reference string takes that reference's record
        self._args = (references, outputs, [known.get(r) for r in references], [known.get(o) for o in outputs])
        self._feeder = self._lane1 = self._job = None
        if workers >= 2 and len(references) >= PARALLEL_MIN_ROWS:
            self._lane1 = fork_lane()
        if self._lane1 is not None:
            self._job = next(_job_ids)
            _JOBS[self._job] = self._args  # before the lanes are forked (at their first chunk)
            chunks = [(self._job, i, j) for i, j in _chunk_bounds(len(references))]
            self._feeder = ChunkFeeder(_score_chunk, chunks)
            self._feeder.add_lane(self._lane1)

    def finish(self, keep_lane: bool):
        from evaluation.workers import fork_lane

        if self._feeder is None:
            rows, records = _score_rows(*self._args)
            return rows, records, None
        lane2 = fork_lane()
        self._feeder.add_lane(lane2)
        try:
            results = self._feeder.results()
        finally:
            self.discard()
            self._lane1.shutdown(wait=False)
            if not keep_lane:
                lane2.shutdown(wait=False)
        rows = [r for chunk_rows, _ in results for r in chunk_rows]
        sent = [r for _, chunk_records in results for r in chunk_records]
        records = [rec if rec is not None else given for rec, given in zip(sent, self._args[2])]
        return rows, records, lane2 if keep_lane else None

    def discard(self) -> None:
        """Forget the stored job (the lanes have their own copy)."""
        _JOBS.pop(self._job, None)


# Rows scored on forked lanes, by job: the lanes are forked after their job is stored here, so they read
# the rows from their copy of the parent's memory and a chunk travels as (job, start, end). Pickled rows
# with their cached records were ~150 kB a chunk, more than a pipe holds: the parent's threads had to push
# them through while its main thread imported torch, which holds the GIL for tenths of a second -- lane 1
# sat idle meanwhile.
_JOBS: dict[int, tuple] = {}
_job_ids = itertools.count()


def _score_chunk(job: int, start: int, end: int):
    """_score_rows on rows start:end of a stored job (in a forked lane); records the parent gave come back
    as None (it has them), so that a chunk's answer stays small too."""
    references, outputs, given, given_outputs = (a[start:end] for a in _JOBS[job])
    rows, records = _score_rows(references, outputs, given, given_outputs)
    return rows, [None if g is not None else rec for g, rec in zip(given, records)]


def _chunk_bounds(n: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive chunks covering n rows: CHUNK_ROWS each, then TAIL_CHUNK_ROWS at the end."""
    tail_start = max(0, (n - 4 * CHUNK_ROWS) // CHUNK_ROWS * CHUNK_ROWS)
    starts = [*range(0, tail_start, CHUNK_ROWS), *range(tail_start, n, TAIL_CHUNK_ROWS)]
    return list(zip(starts, [*starts[1:], n]))


def _score_rows(references, outputs, given, given_outputs):
    from evaluation.molecules import score_rows

    return score_rows(references, outputs, given, given_outputs)


def evaluate_text2mol(
    references: Sequence[str],
    outputs: Sequence[str],
    *,
    strict: bool = False,
    fcd: bool = True,
    sacrebleu: bool = True,
    workers: int | None = None,
    use_cache: bool = True,
    per_row: bool = False,
) -> EvalResult:
    """Score generated SMILES ``outputs`` against ``references`` (row-aligned lists of str).

    ``workers``: processes for RDKit/ChemNet work (default: up to 2, the cores of the target machine);
    ``use_cache``: read/write the reference-side cache (:mod:`evaluation.cache`); numbers are the same
    either way. Metric keys: see ``METRIC_KEYS`` (``fcd`` only with ``fcd=True``). ``per_row``: also keep
    each row's statistics in the result's ``rows`` (:class:`evaluation.rows.RowStatistics`).
    """
    from evaluation.bleu import ngram_stats
    from evaluation.metrics import check_rows, molecule_metrics, smiles_bleu, smiles_levenshtein, smiles_sacrebleu
    from evaluation.workers import default_workers

    references, outputs = list(references), list(outputs)
    check_rows(references, outputs)
    n = len(references)
    workers = default_workers() if workers is None else workers
    timer = PhaseTimer()

    known, cache_file = _reference_records(references, use_cache)
    rows, records, fcd_lane, torch_threads, froze, malloc_restore = None, None, None, None, False, None
    scoring = None
    try:
        scoring = _MoleculeScoring(references, outputs, known, workers)
        # while lane 1 runs RDKit: string metrics, then torch and ChemNet (inherited by lane 2)
        char_stats = ngram_stats(references, outputs)  # MolT5's BLEU over characters, counted once
        metrics: dict[str, float] = {
            "bleu": smiles_bleu(references, outputs, char_stats),
            "levenshtein": smiles_levenshtein(references, outputs),
        }
        sacre_sig = None
        if sacrebleu:
            metrics["sacrebleu"], sacre_sig = smiles_sacrebleu(references, outputs, char_stats)
        timer.mark("strings")
        if fcd:
            torch_threads = _import_fcd_model()
            from evaluation.fcd_metric import reuse_freed_memory

            malloc_restore = reuse_freed_memory()  # for ChemNet, here and in lane 2 (forked next)
            if gc.get_freeze_count() == 0:
                # what is alive now (torch's ~10^5 objects) lives on: keep the collector from walking it in
                # this process and in lane 2, forked next (gc.freeze's documented use before a fork)
                gc.freeze()
                froze = True
            timer.mark("import_torch")
        rows, records, fcd_lane = scoring.finish(keep_lane=fcd)
        timer.mark("rdkit")
        if cache_file is not None and any(r not in known for r in references):
            _save_reference_records(cache_file, dict(zip(references, records)))

        molecule, notes = molecule_metrics(rows, strict)
        metrics.update(molecule)

        if fcd:
            from evaluation.fcd_metric import fcd_score

            canon_refs = [rec.canonical for rec in records if rec.canonical is not None]
            canon_outs = [r.output_canonical for r in rows if r.output_canonical is not None]
            metrics["fcd"] = fcd_score(canon_refs, canon_outs, executor=fcd_lane, use_cache=use_cache)
            timer.mark("fcd")
            if not canon_outs:
                notes.append("no output parses: FCD undefined")
    finally:
        if scoring is not None:
            scoring.discard()
        if froze:
            gc.unfreeze()
        if malloc_restore is not None:
            malloc_restore()
        if fcd_lane is not None:
            fcd_lane.shutdown(wait=False)
        if torch_threads is not None:  # leave the caller's torch as we found it
            import torch

            torch.set_num_threads(torch_threads)

    ordered = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    signature = build_signature("text2mol", "strict" if strict else "molt5", fcd=fcd, sacrebleu_signature=sacre_sig)
    result = EvalResult("text2mol", n, ordered, signature, notes, timer.phases)
    if per_row:
        from evaluation.rows import text2mol_rows

        result.rows = text2mol_rows(rows, strict)
    return result
