"""Choose kNN λ, k, T on the dev slice by the task metric, and write them into the store
(:func:`tune`; on the command line ``t2m tune``, :mod:`t2m.cli.tune`).

Two stages, so the grid can be wide on a CPU:

1. teacher-forced (one forward pass per dev batch, one search per retrieval scope): the mean dev log-likelihood of the
   reference tokens under every (λ, k, T) of the grid. Without ``--temperatures`` the T grid is set
   from the data: the median squared distance d₁ of dev states to their nearest key, times 0.1 .. 10.
2. decoding: the ``--finalists`` best combinations of stage 1 (the likeliest of each retrieval scope first)
   and the model alone (λ = 0) decode the dev slice through ``Translator.translate`` itself (the checkpoint's
   decoding defaults, the SMILES constraint and valid-SMILES reranking, the retrieval scope: what ``t2m
   translate --knn STORE`` will do); the task metric picks the winner (mol2text: BLEU-4 on SciBERT tokens, as
   MolT5; text2mol: exact match, then Morgan FTS), ties broken by stage 1's likelihood.

``--pairs 0,4`` adds the retrieval scope to the grid: 0 searches the whole store, N only the entries of
each dev input's N nearest training pairs (SK-MT, :mod:`t2m.neighbours.pairs`); T's data-driven grid is set per
scope (restricted neighbours are farther). The chosen scope is written with λ, k, T, and ``t2m translate
--knn STORE`` then restricts by default.

The dev slice is never in the store (the benchmark store is built from validation.txt minus the dev
slice); a dev row whose source is also a source in the store's data is reported and skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Sequence

import numpy as np

from datastore.params import KNNParams
from datastore.store import Datastore
from evaluation.metrics import caption_bleu, molecule_scores
from t2m.data import DEV_SIZE, load_chebi20_records
from t2m.decoding.batching import encode_sources
from t2m.decoding.translator import Translator
from t2m.knn.store import device, encode_pairs
from t2m.model.checkpoint import CheckpointInfo, load_model
from t2m.neighbours.pairs import PairFinder
from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints
from t2m.tasks import add_prompt, source_and_target

DEFAULT_LAMBDAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
DEFAULT_KS = (4, 8, 16, 32)
TEMPERATURE_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class TuneResult:
    """What tuning chose, and everything it measured."""

    chosen: KNNParams  # k, λ, T and the retrieval scope (0: the whole store; N: each input's N nearest pairs)
    metric_name: str
    chosen_metric: dict[str, float]
    model_only_metric: dict[str, float]
    finalists: list[dict[str, Any]] = field(default_factory=list)
    stage1_best: list[dict[str, Any]] = field(default_factory=list)
    dev_rows: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- metrics


def dev_metric(task: str, references: Sequence[str], outputs: Sequence[str]
               ) -> tuple[tuple[float, ...], dict[str, float]]:
    """(sort key, named values) of the task metric: mol2text -> (BLEU-4,); text2mol -> (Morgan FTS over
    all rows, exact match). Each number is ``t2m eval``'s, from :mod:`evaluation.metrics`.

    text2mol ranks by the Morgan similarity averaged over **all** rows, an unparsable output counting 0
    (MolT5's Morgan FTS times validity), so that both closeness and validity count; exact match only
    breaks ties. Exact match first was tried: on 150 dev rows, where it is about 0.007, one row decided,
    and with the SMILES syntax constraint on it chose λ = 0 over λ = 0.6, whose Morgan FTS was 0.34
    against 0.28."""
    if task == "mol2text":
        bleu4 = caption_bleu(references, outputs)["bleu4"]
        return (bleu4,), {"bleu4": bleu4}
    metrics = molecule_scores(references, outputs)
    morgan = metrics["morgan_fts"]  # NaN when no output parses
    all_rows = 0.0 if morgan != morgan else morgan * metrics["validity"]
    return (all_rows, metrics["exact_match"]), {"morgan_fts_all_rows": all_rows, "exact_match": metrics["exact_match"],
                                                "morgan_fts": morgan, "validity": metrics["validity"]}


# ---------------------------------------------------------------------------------- stage 1: scoring


def restricted_search(retriever: Any, states: Any, counts: Sequence[int], rows_per_input: Sequence[Any],
                      k: int) -> Any:
    """Search the teacher-forced ``states`` of a batch (its inputs' target tokens, input after input:
    ``counts[i]`` of input i) each among its own input's store rows (``rows_per_input[i]``) with a
    :class:`datastore.RowRestrictedRetriever` (each input's search given its restriction)."""
    import torch

    from datastore.retrieve import Neighbours

    parts, start = [], 0
    for count, rows in zip(counts, rows_per_input):
        parts.append(retriever.search(states[start:start + count], k, retriever.restriction([rows])))
        start += count
    return Neighbours(*(torch.cat([getattr(p, f) for p in parts]) for f in ("distances", "indices", "values")))


def teacher_forced_scores(model: Any, store: Any, batches: Sequence[dict], candidates: Sequence[KNNParams],
                          retriever: Any, progress: bool = True,
                          pair_rows: Sequence[Any] | None = None) -> tuple[np.ndarray, float]:
    """Mean log p(reference token) over all dev target tokens for each candidate (len(candidates),),
    and the median squared distance to the nearest key. ``pair_rows`` (per dev row, the store rows it may
    retrieve from) is given to the searches of a :class:`datastore.RowRestrictedRetriever` ``retriever``."""
    return scopes_teacher_forced_scores(model, store, batches, [(candidates, retriever, pair_rows)], progress)[0]


def scopes_teacher_forced_scores(model: Any, store: Any, batches: Sequence[dict],
                                 scopes: Sequence[tuple[Sequence[KNNParams], Any, Sequence[Any] | None]],
                                 progress: bool = True) -> list[tuple[np.ndarray, float]]:
    """:func:`teacher_forced_scores` for several retrieval scopes, each ``(candidates, retriever, pair_rows)``,
    from one teacher-forced forward pass per batch (the model's part is the same for every scope)."""
    import torch
    from tqdm.auto import tqdm

    from datastore.hooks import StateCapture

    totals = [np.zeros(len(candidates)) for candidates, _, _ in scopes]
    nearest: list[list[np.ndarray]] = [[] for _ in scopes]
    count = 0
    device = next(model.parameters()).device
    with torch.inference_mode(), StateCapture(model, store.layer) as capture:
        for batch in tqdm(batches, desc="tune: teacher-forced dev", unit="batch", disable=not progress):
            labels = batch["labels"].to(device)  # (B, T)
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device), labels=labels).logits
            keep = labels != -100
            states = capture.state[keep]  # (n, dim)
            targets = labels[keep]  # (n,)
            model_lp = torch.log_softmax(logits[keep].float(), -1).gather(1, targets[:, None])[:, 0].double()
            for s, (candidates, retriever, pair_rows) in enumerate(scopes):
                k_max = max(c.k for c in candidates)
                if pair_rows is None:
                    found = retriever.search(states, k_max)  # (n, k_max), sorted by distance
                else:
                    found = restricted_search(retriever, states, keep.sum(1).tolist(),
                                              [pair_rows[int(r)] for r in batch["rows"]], k_max)
                nearest[s].append(found.distances[:, 0].cpu().numpy())
                totals[s] += _mixed_log_likelihood_sums(found, targets, model_lp, candidates)
            count += len(targets)
    return [(t / max(count, 1), float(np.median(np.concatenate(d)))) for t, d in zip(totals, nearest)]


def _mixed_log_likelihood_sums(found: Any, targets: Any, model_lp: Any, candidates: Sequence[KNNParams]) -> np.ndarray:
    """Per candidate, the summed log p(target) of the kNN/model mixture (:func:`datastore.combine.mix_target_log_probs`,
    in float64), given the ``found`` neighbours (sorted by distance), the reference ``targets`` and the model's
    log-probabilities of them; each token's log-probability floored at -100."""
    from datastore.combine import mix_target_log_probs

    distances = found.distances.double()  # (n, k_max)
    sums = np.zeros(len(candidates))
    for i, cand in enumerate(candidates):
        mixed = mix_target_log_probs(model_lp, distances[:, :cand.k], found.values[:, :cand.k], targets,
                                     cand.lambda_, cand.temperature)  # (n,)
        sums[i] = float(mixed.clamp(min=-100.0).sum())
    return sums


# --------------------------------------------------------------------------------- stage 2: decoding


def decode(model: Any, tokenizer: Any, store: Any, sources: Sequence[str], task: str, prompt_style: str,
           candidate: KNNParams | None, retriever: Any, *, num_beams: int = 1, batch_size: int = 32,
           max_new_tokens: int = 256, progress: bool = True,
           generate_options: dict[str, Any] | None = None, smiles_syntax: bool = True,
           pair_rows: Sequence[Any] | None = None) -> list[str]:
    """Outputs for ``sources`` -- the text the model reads (:meth:`t2m.decoding.translator.Translator.model_inputs`,
    neighbours included; the prompt is added when missing) -- with the model alone (``candidate`` None or
    λ = 0) or with kNN, searching ``retriever`` (with ``pair_rows``: per source, the store rows a
    :class:`datastore.RowRestrictedRetriever` may search). Decoded by :meth:`t2m.decoding.translator.Translator.decode`,
    the code ``Translator.translate`` decodes with: ``generate_options`` are the checkpoint's repetition
    settings, ``smiles_syntax`` the SMILES constraint (text2mol; with valid-SMILES reranking, as
    ``Translator``)."""
    info = CheckpointInfo(path="", prompt_style=prompt_style, decoding={task: dict(generate_options or {})})
    translator = Translator(model, tokenizer, info)
    encoded = encode_sources(tokenizer, [add_prompt(s, task, prompt_style) for s in sources], translator.max_source_len)
    decoding, constraints = translator.options(task, DecodingOptions(num_beams=num_beams, batch_size=batch_size,
                                                                     max_new_tokens=max_new_tokens),
                                               SmilesConstraints(syntax=smiles_syntax))
    retrieval = None
    if candidate is not None and candidate.lambda_ != 0:
        retrieval = RetrievalOptions(store, candidate)
    results = translator.decode(encoded, task, decoding, constraints, retrieval, retriever=retriever,
                                pair_rows=pair_rows, progress=progress)
    return [r.output for r in results]


# ------------------------------------------------------------------------------------------- tune


def describe(candidate: KNNParams) -> str:
    return candidate.describe()


def retrieval_scopes(store: Any, sources: Sequence[str], pairs: Sequence[int], exact: bool = False,
                     pair_search: tuple[Any, Any] | None = None) -> dict[int, tuple[Any, list | None]]:
    """For each scope of ``pairs`` (0: the whole store; N: each source's N nearest training pairs), the
    retriever and, for N > 0, per source the store rows it may search (:class:`t2m.neighbours.pairs.PairFinder`).
    The restricted scopes share one :class:`datastore.RowRestrictedRetriever` (each search is given its rows);
    ``pair_search``: the store's (PairFinder, RowRestrictedRetriever) to reuse, e.g.
    ``Translator.pair_search(store)``, instead of building them."""
    wanted = sorted({int(p) for p in pairs})
    if not wanted or wanted[0] < 0:
        raise ValueError(f"pairs must be >= 0 (0: the whole store), got {list(pairs)}")
    scopes: dict[int, tuple[Any, list | None]] = {}
    if wanted[0] == 0:
        scopes[0] = (store.retriever(exact=exact), None)
    restricted = [n for n in wanted if n > 0]
    if restricted:
        from datastore.retrieve import RowRestrictedRetriever

        finder, retriever = pair_search or (PairFinder.for_store(store), RowRestrictedRetriever(store))
        nearest = finder.nearest(sources, max(restricted))  # nearest first: each scope takes its head
        for n in restricted:
            scopes[n] = (retriever, [rows[:n] for rows in nearest])
    return scopes


def finalist_picks(grid: Sequence[KNNParams], scores: Sequence[float], finalists: int) -> list[KNNParams]:
    """The grid points stage 2 decodes: the likeliest point of each retrieval scope first, then the likeliest
    of the rest, ``finalists`` in all (one per scope at least). The likelihood ranks scopes against each
    other poorly: on the official split's text2mol dev rows, the 5 likeliest points all searched the whole
    store (best decoded Morgan FTS 0.416), while each input's 4 nearest pairs, less likely, decoded 0.520."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    picks: list[KNNParams] = []
    for scope in dict.fromkeys(p.pairs for p in grid):
        picks.append(next(grid[i] for i in order if grid[i].pairs == scope))
    for i in order:
        if len(picks) >= finalists:
            break
        if grid[i] not in picks:
            picks.append(grid[i])
    return picks


def tune(store_dir: str | os.PathLike, model_dir: str | os.PathLike, data: str | os.PathLike | None = None, *,
         lambdas: Sequence[float] = DEFAULT_LAMBDAS, ks: Sequence[int] = DEFAULT_KS,
         temperatures: Sequence[float] | None = None, pairs: Sequence[int] = (0,), finalists: int = 4,
         num_beams: int = 1,
         batch_size: int = 32, max_new_tokens: int = 256, dev_rows: int | None = None,
         dev_size: int | None = None, exact: bool = False,
         write: bool = True, allow_pickle: bool = False, progress: bool = True) -> TuneResult:
    """Grid-search λ, k, T for the store in ``store_dir`` with the checkpoint in ``model_dir`` on the
    dev slice of ``data`` (ChEBI-20 folder; the store's setting and dev size) and, when ``write``, save the choice as
    the store's default kNN parameters. ``pairs``: retrieval scopes to try (0: the whole store; N: each
    input's N nearest training pairs). Returns the :class:`TuneResult`."""
    from datastore.build import PairBatches

    started = time.perf_counter()
    model, tokenizer, info = load_model(model_dir, allow_pickle=allow_pickle, device=device())
    store = Datastore.load(store_dir, model=model, tokenizer=tokenizer)
    task = store.task
    if task not in ("text2mol", "mol2text"):
        raise ValueError(f"{store.path}/datastore.json: task {task!r} is not text2mol or mol2text")
    data_meta = store.meta.get("data", {})
    dev_size = int(data_meta.get("dev_size", DEV_SIZE) if dev_size is None else dev_size)
    splits = load_chebi20_records(data, data_meta.get("setting", "auto"), dev_size=dev_size)
    train_sources = {source_and_target(r["smiles"], r["description"], task)[0] for r in splits.train}
    dev = [r for r in splits.dev if source_and_target(r["smiles"], r["description"], task)[0] not in train_sources]
    if len(dev) < len(splits.dev):
        print(f"tune: {len(splits.dev) - len(dev)} dev rows skipped: their source is also a training source")
    dev = dev[:dev_rows] if dev_rows else dev
    dev_pairs = [source_and_target(r["smiles"], r["description"], task) for r in dev]
    sources, references = [s for s, _ in dev_pairs], [t for _, t in dev_pairs]
    # what the model reads: with its neighbours for a checkpoint trained with them (pair search: the bare input)
    translator = Translator(model, tokenizer, info)
    model_sources = translator.model_inputs(sources, task)
    max_len = int(data_meta.get("max_target_len", 512))
    encode = partial(encode_pairs, tokenizer, task=task, prompt_style=info.prompt_style,
                     max_source_len=int(data_meta.get("max_source_len", 512)), max_target_len=max_len)
    batches = PairBatches(encode, model_sources, references, batch_size)
    scopes = retrieval_scopes(store, sources, pairs, exact,
                              pair_search=translator.pair_search(store) if any(pairs) else None)

    # stage 1: the likelihood over the whole grid (per scope, one forward pass for all); T from the data unless given
    grid: list[KNNParams] = []
    stage1_scopes = []
    if temperatures is None:  # each scope's nearest distances on the first batch, from one forward pass
        probe = [KNNParams(max(ks), 0.5, 1.0)]
        probed = scopes_teacher_forced_scores(model, store, [batches[0]],
                                              [(probe, retriever, rows) for retriever, rows in scopes.values()],
                                              progress=False)
    for s, (n, (retriever, pair_rows)) in enumerate(scopes.items()):
        scope_temperatures = temperatures
        if scope_temperatures is None:
            d1 = probed[s][1]
            scope_temperatures = sorted({float(f"{max(d1, 1e-6) * f:.3g}") for f in TEMPERATURE_FACTORS})
        scope_grid = [KNNParams(k, lambda_, t, n) for k in ks for lambda_ in lambdas for t in scope_temperatures]
        grid += scope_grid
        stage1_scopes.append((scope_grid, retriever, pair_rows))
    stage1_scopes[0][0].append(KNNParams(1, 0.0, 1.0))  # the model alone (λ = 0: the same in every scope)
    parts = scopes_teacher_forced_scores(model, store, batches, stage1_scopes, progress=progress)
    model_only = float(parts[0][0][-1])
    scores = np.concatenate([parts[0][0][:-1]] + [p for p, _ in parts[1:]])
    nearest_d1 = {n: d for n, (_, d) in zip(scopes, parts)}
    d1 = nearest_d1[min(scopes)]
    order = np.argsort(-scores)
    stage1 = [{**asdict(grid[i]), "dev_log_likelihood": round(float(scores[i]), 5)} for i in order[:10]]
    picks = finalist_picks(grid, scores, finalists)

    # stage 2: decode the dev slice as `t2m translate` does (Translator.translate: the checkpoint's decoding
    # defaults, valid-SMILES reranking, the retrieval scope) and score by the task metric
    options = info.decoding_options(task)
    decoding = DecodingOptions(num_beams=num_beams, batch_size=batch_size, max_new_tokens=max_new_tokens)

    def dev_outputs(cand: KNNParams | None) -> list[str]:
        retrieval = None if cand is None or cand.lambda_ == 0 else RetrievalOptions(store, cand, exact=exact)
        return [t.output for t in translator.translate(sources, task, decoding, retrieval=retrieval, progress=progress)]

    base_key, base_metric = dev_metric(task, references, dev_outputs(None))
    results = [(base_key, model_only, KNNParams(store.knn_params.k, 0.0, store.knn_params.temperature), base_metric)]
    for cand in picks:
        key, metric = dev_metric(task, references, dev_outputs(cand))
        results.append((key, float(scores[grid.index(cand)]), cand, metric))
        print(f"tune: {describe(cand)}: {metric}", flush=True)
    best_key, best_ll, best, best_metric = max(results, key=lambda r: (r[0], r[1]))
    metric_name = "bleu4" if task == "mol2text" else "morgan_fts_all_rows, exact_match"
    result = TuneResult(
        chosen=best, metric_name=metric_name, chosen_metric=best_metric, model_only_metric=base_metric,
        finalists=[{**asdict(c), **m, "dev_log_likelihood": round(ll, 5)} for _, ll, c, m in results],
        stage1_best=stage1, dev_rows=len(dev), seconds=round(time.perf_counter() - started, 1))
    if write:
        store.set_knn_params(
            best,
            source=f"t2m tune on {len(dev)} dev rows ({data_meta.get('setting', '?')} setting), "
                   f"num_beams={num_beams}" + "".join(f", {k}={v}" for k, v in options.items()),
            extra={"dev_metric": best_metric, "model_only_dev_metric": base_metric, "metric": metric_name,
                   "finalists": result.finalists, "median_nearest_sq_distance": round(d1, 5),
                   "median_nearest_sq_distance_by_pairs": {str(n): round(v, 5) for n, v in nearest_d1.items()},
                   "index": scopes[best.pairs][0].description},
        )
    return result
