"""``t2m bench``: does retrieval help, in which direction, at what cost?

    t2m bench [--model DIR] [--data DIR] [--out DIR] [--tasks text2mol,mol2text] [--beams 1,5]
              [--limit N] [--dev-limit N] [--fractions 0.25,0.5,1.0] [--store-dir DIR] [--no-fcd]
              [--bootstrap 1000]

For each task, on the test split of the data setting (ChEBI-20 benchmark setting by default), it runs

- ``retrieval``: the baseline with no model (:mod:`t2m.neighbours.baselines`), database = the setting's train split;
- ``model``: the checkpoint alone, greedy and beam (text2mol with and without valid-SMILES reranking);
- ``model+knn``: the same with the task's kNN-MT datastore (built under ``--store-dir`` when missing,
  tuned on the dev slice with ``t2m tune`` when it has no tuned λ, k, T);

scores every system with ``t2m eval``'s full metric set, and measures what retrieval costs (molecules/s
and output tokens/s with and without kNN, datastore build time, entries, bytes, peak memory). Paired
bootstrap 95% intervals (rows resampled, each metric recomputed from the evaluator's per-row statistics:
BLEU from resampled n-gram counts, as sacrebleu's paired bootstrap) give the kNN-minus-model differences on the headline metrics, and
the model's and model + kNN's differences to the retrieval baselines (``retrieval`` and, for a checkpoint
with a neighbour ranker, ``retrieval+ranker``). Datastores built from 25/50/100% of the training pairs (the model fixed, the λ, k, T
tuned on the full store) show how the gain scales with the datastore.

System names: the headline beam (the largest of ``--beams``) has the bare names ``model``,
``model+knn``, ``retrieval``; other beams add ``@greedy`` / ``@beam<N>``; text2mol without reranking adds
``/no-rerank``.

Outputs in ``--out``: ``bench.json`` (every number, settings, evaluation signatures), ``bench.md``
(the tables for docs/results.md), ``plots/*.png``, ``examples.json`` and ``report.html`` (:mod:`t2m.report`), and
``predictions/<task>/<system>.tsv`` (MolT5's format, ready for ``t2m eval``). Decoded predictions are
reused on a rerun with the same settings, and the finished chunks of a decoding that was cut short are
kept beside them (``<system>.tsv.partial``), so a rerun of the same command resumes a full-test bench
of hours where it stopped (its time is the sum of the pieces'); ``--fresh`` recomputes them.

Everything is a thin layer over :func:`run_bench` (Python: ``run_bench(BenchConfig(...))``). The package:

- :mod:`t2m.bench.config`: :class:`BenchConfig` (the settings of a run) and the headline metrics per task;
- :mod:`t2m.bench.systems`: what is decoded -- the model, the model + kNN, the retrieval baseline -- timed;
- :mod:`t2m.bench.cache`: decoded predictions reused on a rerun; JSON output;
- :mod:`t2m.bench.stores`: the task's datastores built, tuned, described; the λ sweep;
- :mod:`t2m.bench.statistics`: paired bootstrap over the evaluator's per-row statistics;
- :mod:`t2m.bench.examples`, :mod:`t2m.bench.verdicts`: the report's example rows, verdicts and costs;
- :mod:`t2m.bench.task`: one task end to end; :mod:`t2m.bench.run`: the whole bench;
- :mod:`t2m.bench.rewrite`: ``t2m report``, bench.md and report.html rewritten from bench.json.

The ``t2m bench`` command line is :mod:`t2m.cli.bench`.

Submodules are imported lazily: ``from t2m.bench import BenchConfig`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BenchConfig": "t2m.bench.config",
    "SWEEP_LAMBDAS": "t2m.bench.config",
    "HEADLINE_METRICS": "t2m.bench.config",
    "PRIMARY_METRIC": "t2m.bench.config",
    "VERSUS_RETRIEVAL": "t2m.bench.config",
    "LOWER_IS_BETTER": "t2m.bench.config",
    "EXAMPLE_SYSTEMS": "t2m.bench.config",
    "SystemRun": "t2m.bench.systems",
    "system_name": "t2m.bench.systems",
    "count_output_tokens": "t2m.bench.systems",
    "effective_decoding_options": "t2m.bench.systems",
    "decode_system": "t2m.bench.systems",
    "without_rerank": "t2m.bench.systems",
    "retrieval_system": "t2m.bench.systems",
    "PredictionCache": "t2m.bench.cache",
    "write_json_atomic": "t2m.bench.cache",
    "folder_bytes": "t2m.bench.stores",
    "store_path": "t2m.bench.stores",
    "prepare_task_stores": "t2m.bench.stores",
    "run_prepare": "t2m.bench.stores",
    "describe_store": "t2m.bench.stores",
    "check_store_model": "t2m.bench.stores",
    "knn_record": "t2m.bench.stores",
    "lambda_sweep": "t2m.bench.stores",
    "RowScores": "t2m.bench.statistics",
    "text2mol_row_scores": "t2m.bench.statistics",
    "CaptionScorer": "t2m.bench.statistics",
    "paired_bootstrap": "t2m.bench.statistics",
    "trace_neighbours": "t2m.bench.examples",
    "pick_examples": "t2m.bench.examples",
    "example_rows": "t2m.bench.examples",
    "verdicts": "t2m.bench.verdicts",
    "cost_summary": "t2m.bench.verdicts",
    "run_task": "t2m.bench.task",
    "run_bench": "t2m.bench.run",
    "task_decode_pool": "t2m.bench.run",
    "prepare_in_parallel": "t2m.bench.run",
    "write_outputs": "t2m.bench.run",
    "machine_info": "t2m.bench.run",
    "command_line": "t2m.bench.config",
    "rewrite_report": "t2m.bench.rewrite",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 't2m.bench' has no attribute {name!r}")
