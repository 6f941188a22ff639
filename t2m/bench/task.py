"""One task of the bench: every system decoded (or reused from the prediction cache), scored with the
evaluator, compared by paired bootstrap, the datastore-size runs and the report's examples."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from t2m.bench.cache import PredictionCache, clean, sha
from t2m.bench.config import BenchConfig, COMPARED_METRICS, HEADLINE_METRICS, PRIMARY_METRIC, VERSUS_PUBLISHED
from t2m.bench.editing import editing_part
from t2m.bench.examples import example_rows, pick_examples, trace_neighbours
from t2m.bench.published import is_published, published_runs
from t2m.bench.statistics import CaptionScorer, RowScores, evaluate, paired_bootstrap, row_scores
from t2m.bench.stores import check_store_model, describe_store, knn_record, lambda_sweep, run_prepare
from t2m.bench.systems import (SystemRun, decode_system, effective_decoding_options, ranked_retrieval_system,
                               retrieval_system, system_name, without_rerank)
from t2m.bench.verdicts import best_default_system, cost_summary
from t2m.options import RetrievalOptions
from t2m.tasks import TEXT2MOL, source_and_target


@dataclass
class TaskRuns:
    """The test rows of one task and the systems run on them so far (``runs``, by system name)."""

    config: BenchConfig
    task: str
    translator: Any
    cache: PredictionCache
    pool: Any  # a t2m.decoding.pool.DecodePool that every decoding is split over, or None
    test: list[dict]
    train: list[dict]
    sources: list[str]
    references: list[str]
    rows_key: dict[str, Any]  # what every cached prediction of the task must have been made with
    caption_scorer: CaptionScorer | None = None  # mol2text: the evaluator's tokenizer and METEOR, loaded once
    runs: dict[str, SystemRun] = field(default_factory=dict)

    @classmethod
    def start(cls, config: BenchConfig, task: str, translator: Any, splits: Any, cache: PredictionCache,
              model_fp: str, pool: Any = None, caption_scorer: CaptionScorer | None = None) -> "TaskRuns":
        test = splits.test[: config.limit] if config.limit else list(splits.test)
        pairs = [source_and_target(r["smiles"], r["description"], task) for r in test]
        sources, references = [s for s, _ in pairs], [t for _, t in pairs]
        rows_key = {"model": model_fp, "sources": sha(sources), "references": sha(references),
                    "max_new_tokens": config.max_new_tokens,
                    "repetition": effective_decoding_options(translator, task, config)}
        return cls(config, task, translator, cache, pool, list(test), list(splits.train), sources, references, rows_key,
                   caption_scorer)

    @property
    def plan(self) -> list[tuple[int, bool]]:
        """(beam, rerank) of each model system: text2mol beams > 1 also without reranking (read off the same
        decoding)."""
        plan = []
        for beam in sorted(self.config.beams):
            plan += [(beam, True)] + ([(beam, False)] if self.task == TEXT2MOL and beam > 1 else [])
        return plan

    @property
    def scaling_beam(self) -> int:
        return self.config.scaling_beam or min(self.config.beams)

    @property
    def scaling_rows(self) -> int:
        return min(len(self.sources), self.config.scaling_limit or len(self.sources))

    def name(self, base: str, beam: int, rerank: bool = True) -> str:
        return system_name(base, beam, self.config.headline_beam, rerank, self.task)

    def run_or_reuse(self, name: str, key: dict[str, Any], make: Callable[..., SystemRun],
                     rows: int | None = None, resumable: bool = False) -> SystemRun:
        """The cached run of ``name`` with these settings or a new one from ``make()``, on the first
        ``rows`` test rows (None: all). ``resumable``: ``make(kept)`` is given the
        :meth:`PredictionCache.open_partial` of the run, the rows an interrupted bench decoded."""
        task, sources, references = self.task, self.sources, self.references
        rows = len(sources) if rows is None else rows
        full_key = {**self.rows_key, **key}
        if rows != len(sources):
            full_key.update(sources=sha(sources[:rows]), references=sha(references[:rows]))
        cached = self.cache.load(task, name, full_key)
        if cached is not None:
            print(f"bench: {task} {name}: reusing {len(cached.outputs)} cached predictions", file=sys.stderr)
            return cached
        print(f"bench: {task} {name} on {rows} test rows", file=sys.stderr)
        started = time.perf_counter()
        kept = self.cache.open_partial(task, name, full_key) if resumable else None
        try:
            run = make(kept) if resumable else make()
        finally:
            if kept is not None:
                kept.close()
        run.name = name
        self.cache.save(task, run, full_key, sources[:rows], references[:rows])
        if kept is not None:
            kept.remove()
        print(f"bench: {task} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return run

    def run_plan(self, base: str, key: dict[str, Any], knn: Any) -> None:
        """Every (beam, rerank) of :attr:`plan` with the model (``knn``: None) or the model + kNN."""
        for beam, rerank in self.plan:
            name = self.name(base, beam, rerank)
            if rerank:
                self.runs[name] = self.run_or_reuse(name, {**key, "beam": beam, "rerank": True}, lambda kept: decode_system(
                    self.translator, name, self.sources, self.task, beam, True, knn, self.config, self.pool, kept),
                    resumable=True)
            else:
                self.runs[name] = without_rerank(self.runs[self.name(base, beam, True)], name,
                                                 self.translator.tokenizer)
                self.cache.save(self.task, self.runs[name], {**self.rows_key, **key, "beam": beam, "rerank": False},
                                self.sources, self.references)

    def run_retrieval(self) -> None:
        """The retrieval baseline (no model), and with the checkpoint's neighbour ranker where it has one."""
        train_key = sha([r["cid"] for r in self.train])
        self.runs["retrieval"] = self.run_or_reuse(
            "retrieval", {"system": "retrieval", "train": train_key},
            lambda: retrieval_system(self.task, self.train, self.sources, self.config.progress))
        database = getattr(self.translator, "database", None)
        ranker = getattr(database, "rankers", {}).get(self.task)
        if ranker is not None:
            self.runs["retrieval+ranker"] = self.run_or_reuse(
                "retrieval+ranker", {"system": "retrieval+ranker", "train": train_key, "ranker": ranker.to_dict()},
                lambda: ranked_retrieval_system(self.task, self.train, self.sources, ranker))


def run_task(config: BenchConfig, task: str, translator: Any, model_dir: Path, splits: Any,
             caption_scorer: CaptionScorer | None, cache: PredictionCache, model_fp: str,
             prepared: dict[str, Any] | None = None, pool: Any = None,
             published: Path | None = None) -> tuple[dict, dict]:
    """Every system, comparison and measurement of one task; returns (bench.json part, examples part).
    ``prepared``: :func:`prepare_task_stores`' record when the stores were prepared beforehand (else
    it runs here); ``pool``: a :class:`t2m.decoding.pool.DecodePool` that every decoding is split over;
    ``published``: a folder of MolT5's published predictions, scored beside the systems."""
    t = TaskRuns.start(config, task, translator, splits, cache, model_fp, pool, caption_scorer)
    t.run_retrieval()
    t.run_plan("model", {"system": "model"}, None)
    if published is not None:
        t.runs.update(published_runs(task, t.sources, t.references, published))
    if not config.knn:
        return _model_only_part(t)

    # the datastores: built where missing, the full one tuned if untuned (in a child process)
    prepared = prepared or run_prepare(config, model_dir, task)
    store, store_info = describe_store(config, task, 1.0, prepared)
    check_store_model(store, translator)
    knn_info = knn_record(store, prepared)
    params = store.knn_params
    translator.preload_retrieval(store, params.pairs)  # before the clock starts
    store_key = {"store_entries": store.count, "store_fp": store.meta.get("model", {}).get("fingerprint"),
                 "k": params.k, "lambda": params.lambda_, "temperature": params.temperature,
                 "index": store.meta.get("index", {}).get("factory")}
    if params.pairs:  # (absent for whole-store runs: their cached predictions stay valid)
        store_key["pairs"] = params.pairs

    t.run_plan("model+knn", {"system": "model+knn", **store_key}, RetrievalOptions(store, params))

    # λ sweep on dev (the plot of quality against λ)
    train_sources = {source_and_target(r["smiles"], r["description"], task)[0] for r in t.train}
    sweep = lambda_sweep(config, translator, store, task, splits.dev, train_sources)

    scaling_runs = _scaling_runs(t, prepared, params, store_key)
    results, rows, signature = _scores(t)
    systems = _systems(t.runs, results)
    default = best_default_system(task, systems)
    part = {
        "rows": len(t.sources),
        "changed_outputs": sum(a != b for a, b in zip(t.runs["model+knn"].outputs, t.runs["model"].outputs)),
        "headline_beam": config.headline_beam,
        "headline_metrics": list(HEADLINE_METRICS[task]),
        "signature": signature,
        "systems": systems,
        "comparisons": _knn_comparisons(t, rows) + _published_comparisons(t, rows, default),
        "datastore": {**store_info, "knn": knn_info},
        "lambda_sweep": sweep,
        "scaling": _scaling_part(t, rows, scaling_runs, store_info, params),
        "cost": cost_summary(systems, store_info, sorted(config.beams), config.headline_beam, task),
        "default_system": default,
        "editing": editing_part(task, t.runs, rows, t.test, t.train, t.references),
    }
    return clean(part), clean(_knn_examples(t, rows, store, params))


def _scaling_runs(t: TaskRuns, prepared: dict[str, Any], params: Any, store_key: dict[str, Any]
                  ) -> dict[float, tuple[SystemRun, dict]]:
    """Datastore scaling: model + kNN with the stores of fractions of the training pairs (the model and
    λ, k, T fixed) on the first ``t.scaling_rows`` test rows. {fraction: (run, store description)}."""
    config, task, translator = t.config, t.task, t.translator
    scaling_runs: dict[float, tuple[SystemRun, dict]] = {}
    for fraction in sorted(set(config.fractions)):
        if fraction == 1.0:
            continue
        f_store, f_info = describe_store(config, task, fraction, prepared)
        check_store_model(f_store, translator)
        translator.preload_retrieval(f_store, params.pairs)
        name = t.name(f"model+knn[{round(fraction * 100):g}%]", t.scaling_beam)
        knn = RetrievalOptions(f_store, params)
        key = {"system": "model+knn", "beam": t.scaling_beam, "rerank": True, **store_key,
               "store_entries": f_store.count, "fraction": fraction}
        scaling_runs[fraction] = (t.run_or_reuse(name, key, lambda kept: decode_system(
            translator, name, t.sources[:t.scaling_rows], task, t.scaling_beam, True, knn, config, t.pool, kept),
            rows=t.scaling_rows, resumable=True), f_info)
    return scaling_runs


def _scores(t: TaskRuns) -> tuple[dict, dict[str, RowScores], Any]:
    """(evaluator results, the evaluator's per-row statistics, signature) of every run."""
    results: dict[str, Any] = {}
    signature = None
    for name, run in t.runs.items():
        result = evaluate(t.task, t.references, run.outputs, t.config.fcd, t.caption_scorer)
        signature = signature or result.signature
        results[name] = result
    return results, {name: result.rows for name, result in results.items()}, signature


def _systems(runs: dict[str, SystemRun], results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """bench.json's record of each system: settings, metrics, speed, flags and memory."""
    return {name: {"settings": run.settings, "metrics": results[name].metrics, "notes": results[name].notes,
                   "speed": run.speed, "flags": run.flags, "memory": run.memory} for name, run in runs.items()}


def _knn_comparisons(t: TaskRuns, rows: dict[str, RowScores]) -> list[dict[str, Any]]:
    """Paired bootstrap of model + kNN minus the model at each (beam, rerank), and of the headline model
    and model + kNN minus the retrieval baseline, on the headline metrics and MACCS FTS (text2mol)."""
    config, metrics = t.config, COMPARED_METRICS[t.task]
    comparisons = []
    for beam, rerank in t.plan:
        knn_name = t.name("model+knn", beam, rerank)
        model_name = t.name("model", beam, rerank)
        for metric in metrics:
            c = paired_bootstrap(rows[knn_name], rows[model_name], metric, config.bootstrap, config.seed)
            comparisons.append({"system": knn_name, "baseline": model_name, **c})
    comparisons += _versus_retrieval(t, rows, ["model+knn", "model"])
    return comparisons + _ranker_comparisons(t, rows)


def _versus_retrieval(t: TaskRuns, rows: dict[str, RowScores], systems: list[str]) -> list[dict[str, Any]]:
    """Paired bootstrap of each of ``systems`` minus the retrieval baseline and, where the checkpoint has
    a neighbour ranker, minus retrieval + ranker (the system the T5 must beat to earn its place)."""
    config, metrics = t.config, COMPARED_METRICS[t.task]
    baselines = [b for b in ("retrieval", "retrieval+ranker") if b in rows]
    return [{"system": system, "baseline": baseline,
             **paired_bootstrap(rows[system], rows[baseline], metric, config.bootstrap, config.seed)}
            for baseline in baselines for metric in metrics for system in systems]


def _ranker_comparisons(t: TaskRuns, rows: dict[str, RowScores]) -> list[dict[str, Any]]:
    """Paired bootstrap of the ranked retrieval minus the nearest pair's target (when the checkpoint has a
    neighbour ranker)."""
    if "retrieval+ranker" not in rows:
        return []
    config = t.config
    return [{"system": "retrieval+ranker", "baseline": "retrieval",
             **paired_bootstrap(rows["retrieval+ranker"], rows["retrieval"], metric, config.bootstrap, config.seed)}
            for metric in COMPARED_METRICS[t.task]]


def _published_comparisons(t: TaskRuns, rows: dict[str, RowScores], default: dict[str, Any] | None
                           ) -> list[dict[str, Any]]:
    """Paired bootstrap of the default system (:func:`best_default_system`) minus each published model's
    predictions, on :data:`VERSUS_PUBLISHED`."""
    if default is None:
        return []
    config = t.config
    return [{"system": default["system"], "baseline": name,
             **paired_bootstrap(rows[default["system"]], rows[name], metric, config.bootstrap, config.seed)}
            for name in rows if is_published(name) for metric in VERSUS_PUBLISHED[t.task]]


def _scaling_part(t: TaskRuns, rows: dict[str, RowScores], scaling_runs: dict[float, tuple[SystemRun, dict]],
                  store_info: dict[str, Any], params: Any) -> dict[str, Any]:
    """The scaling table: 100% is the main kNN run at the scaling beam; all points on the first
    ``t.scaling_rows`` rows, each with its gain over the model alone."""
    config, metrics, scaling_rows = t.config, HEADLINE_METRICS[t.task], t.scaling_rows
    points = []
    model_at_beam = t.name("model", t.scaling_beam)
    full_name = t.name("model+knn", t.scaling_beam)
    base_rows = rows[model_at_beam].head(scaling_rows)
    for fraction in sorted(set(config.fractions) | {1.0}):
        if fraction == 1.0:
            run, info, rs = t.runs[full_name], store_info, rows[full_name].head(scaling_rows)
        elif fraction in scaling_runs:
            run, info = scaling_runs[fraction]
            rs = row_scores(t.task, t.references[:scaling_rows], run.outputs, t.caption_scorer)
        else:
            continue
        gain = {m: paired_bootstrap(rs, base_rows, m, config.bootstrap, config.seed) for m in metrics}
        points.append({
            "fraction": fraction, "system": run.name, "rows": info.get("rows"), "entries": info["entries"],
            "bytes_on_disk": info["bytes_on_disk"], "build_seconds": info["build_seconds"],
            "build_seconds_recorded": info["build_seconds_recorded"], "metrics": {m: rs.corpus(m) for m in metrics},
            "gain_over_model": {m: {"delta": g["delta"], "ci95": g["ci95"], "excludes_zero": g["excludes_zero"]}
                                for m, g in gain.items()},
            "speed": run.speed})
    return {"beam": t.scaling_beam, "rows": scaling_rows,
            "baselines": {name: {m: rows[name].head(scaling_rows).corpus(m) for m in metrics}
                          for name in (model_at_beam, "retrieval")},
            "knn": {"k": params.k, "lambda": params.lambda_, "temperature": params.temperature,
                    "pairs": params.pairs or 0},
            "note": "λ, k, T tuned on the full store, reused for the smaller ones", "points": points}


def _knn_examples(t: TaskRuns, rows: dict[str, RowScores], store: Any, params: Any) -> dict[str, Any]:
    """The report's examples (and the neighbours behind a few changed outputs)."""
    picks = pick_examples(t.task, rows, t.runs, t.config.examples)
    examples: dict[str, Any] = {"primary_metric": PRIMARY_METRIC[t.task], "groups": []}
    titles = {"best": "Best rows of model + kNN", "worst": "Worst rows of model + kNN",
              "changed": "Rows where retrieval changed the output most"}
    for group in ("best", "worst", "changed"):
        group_rows = example_rows(t.task, picks[group], t.test, t.sources, t.references, t.runs, rows, t.train)
        if group == "changed":
            for row in group_rows:
                row["retrieval_trace"] = trace_neighbours(t.translator, store, t.task, row["source"], t.train, params,
                                                          t.config)
        examples["groups"].append({"key": group, "title": titles[group], "rows": group_rows})
    return examples


def _model_only_part(t: TaskRuns) -> tuple[dict, dict]:
    """bench.json's part of a task benched without kNN (``--no-knn``): the model at every beam against the
    retrieval baseline, with paired-bootstrap intervals, speed and memory."""
    config, task = t.config, t.task
    results, rows, signature = _scores(t)
    systems = _systems(t.runs, results)
    comparisons = _versus_retrieval(t, rows, [t.name("model", beam, rerank) for beam, rerank in t.plan])
    comparisons += _ranker_comparisons(t, rows)
    default = best_default_system(task, systems)
    comparisons += _published_comparisons(t, rows, default)
    picks = pick_examples(task, rows, t.runs, config.examples)
    titles = {"best": "Best rows of the model", "worst": "Worst rows of the model"}
    examples = {"primary_metric": PRIMARY_METRIC[task], "groups": [
        {"key": g, "title": titles[g],
         "rows": example_rows(task, picks[g], t.test, t.sources, t.references, t.runs, rows, t.train)}
        for g in ("best", "worst")]}
    part = {"rows": len(t.sources), "headline_beam": config.headline_beam,
            "headline_metrics": list(HEADLINE_METRICS[task]), "signature": signature, "systems": systems,
            "comparisons": comparisons, "datastore": None, "lambda_sweep": None, "scaling": None,
            "cost": cost_summary(systems, None, sorted(config.beams), config.headline_beam, task),
            "default_system": default, "editing": editing_part(task, t.runs, rows, t.test, t.train, t.references)}
    return clean(part), clean(examples)
