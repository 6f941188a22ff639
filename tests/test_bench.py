"""`t2m bench` end to end on a tiny random T5 and real ChEBI-20 rows, and its statistics on real data.

The small bench runs both tasks, greedy and beam 2, on 8 test rows, with datastores of 50% and 100% of
the 120 training pairs (exact Flat index), a 3-point λ sweep and 200 bootstrap resamples.
"""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pytest
import torch

from t2m.bench import (CaptionScorer, RowScores, paired_bootstrap, system_name, text2mol_row_scores)

TEST_ROWS = 8
DEV_SIZE = 40


@pytest.fixture(scope="module")
def bench_dir(tiny_model_dir, tiny_chebi20, shared_data, tmp_path_factory):
    from t2m.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--model", str(tiny_model_dir), "--data", str(tiny_chebi20), "--out", str(out),
            "--published", str(shared_data / "molt5_predictions"),
            "--dev-size", str(DEV_SIZE), "--tasks", "text2mol,mol2text", "--beams", "1,2", "--limit", str(TEST_ROWS),
            "--dev-limit", "8", "--fractions", "0.5,1.0", "--index", "Flat", "--no-fcd", "--bootstrap", "200",
            "--knn-lambdas", "0,0.5,1", "--sweep-rows", "4", "--max-new-tokens", "24", "--batch-size", "8",
            "--examples", "2", "--no-progress"]
    assert main(argv) == 0
    return out


def test_bench_json_names_every_system_with_eval_metrics_and_speed(bench_dir):
    from evaluation.mol2text import METRIC_KEYS as CAPTION_KEYS
    from evaluation.text2mol import METRIC_KEYS as MOLECULE_KEYS

    bench = json.loads((bench_dir / "bench.json").read_text())
    assert bench["data"]["setting"] == "benchmark" and bench["data"]["test_rows_used"] == TEST_ROWS
    assert bench["data"]["train_rows"] == 160 - DEV_SIZE
    assert bench["settings"]["beams"] == [1, 2] and bench["settings"]["fcd"] is False
    published = {"published:T5-small", "published:MolT5-small", "published:MolT5-base", "published:MolT5-large"}
    expected = {
        "text2mol": {"retrieval", "model", "model/no-rerank", "model@greedy", "model+knn", "model+knn/no-rerank",
                     "model+knn@greedy"} | published,
        "mol2text": {"retrieval", "model", "model@greedy", "model+knn", "model+knn@greedy"} | published,
    }
    for task, keys in (("text2mol", [k for k in MOLECULE_KEYS if k != "fcd"]), ("mol2text", list(CAPTION_KEYS))):
        t = bench["tasks"][task]
        assert set(t["systems"]) == expected[task]
        assert bench["signature"][task]["task"] == task and bench["signature"][task]["mode"] == "molt5"
        for name, system in t["systems"].items():
            assert list(system["metrics"]) == keys, name
            assert system["speed"]["rows"] == TEST_ROWS
            if name.startswith("published:"):  # read from MolT5's files: scored, not timed
                assert system["speed"]["molecules_per_s"] is None and system["settings"]["sha256"]
            else:
                assert system["speed"]["molecules_per_s"] > 0
        assert t["systems"]["model+knn"]["settings"]["knn"]["entries"] == t["datastore"]["entries"]
        assert t["systems"]["model"]["settings"]["num_beams"] == 2
        assert t["systems"]["model@greedy"]["settings"]["num_beams"] == 1
        if task == "text2mol":  # without reranking: the top beam of the same decoding run
            plain = t["systems"]["model+knn/no-rerank"]
            assert plain["settings"]["derived_from"] == "model+knn" and not plain["settings"]["valid_smiles_rerank"]
            assert plain["speed"]["seconds"] == t["systems"]["model+knn"]["speed"]["seconds"]

        # tuned on dev by the datastore helper, since the stores were new
        assert t["datastore"]["built_here"] and t["datastore"]["knn"]["tuned_here"]
        assert t["datastore"]["knn"]["source"].startswith("t2m tune")
        assert t["datastore"]["bytes_on_disk"] > 0 and t["datastore"]["build_seconds"] > 0
        # built and tuned in a child process: its peak memory is reported apart from the bench's
        assert t["datastore"]["build_process"] == "child process" and t["datastore"]["build_peak_rss_mb"] > 0

        comparisons = {(c["system"], c["baseline"], c["metric"]) for c in t["comparisons"]}
        primary = "bleu4" if task == "mol2text" else "exact_match"
        assert ("model+knn", "model", primary) in comparisons and ("model+knn", "retrieval", primary) in comparisons
        for c in t["comparisons"]:
            low, high = c["ci95"]
            if c["delta"] is None:  # undefined for a system, e.g. Morgan FTS when none of its SMILES parse
                assert low is None and high is None and c["samples"] == 0
            else:
                assert low <= high and c["samples"] == 200
        assert any(c["delta"] is not None for c in t["comparisons"])

        points = t["scaling"]["points"]
        assert t["scaling"]["beam"] == 1 and [p["fraction"] for p in points] == [0.5, 1.0]
        assert points[1]["system"] == "model+knn@greedy"
        assert points[0]["entries"] < points[1]["entries"] == t["datastore"]["entries"]
        assert [p["lambda"] for p in t["lambda_sweep"]["points"]] == [0.0, 0.5, 1.0]
        assert all("metric" in p for p in t["lambda_sweep"]["points"])
        assert t["cost"]["decoding"][0]["beam"] == 1 and t["cost"]["peak_rss_mb"] > 0
        best = t["default_system"]  # what t2m ship would make t2m translate's default
        assert set(best["scores"]) == {"model", "retrieval"} and best["system"] in best["scores"]
        assert best["system"] == max(best["scores"], key=lambda name: (best["scores"][name], name == "model"))
        assert any(line.startswith(f"{task}: the best system t2m translate can run by default is {best['system']}")
                   for line in bench["verdict"])
        # editing: every system against the pair the ranked retrieval answers with, by similarity band
        editing = t["editing"]
        assert sum(editing["rows_by_band"].values()) == TEST_ROWS and {"model", "retrieval"} <= set(editing["systems"])
        assert editing["neighbour"] == "retrieval"  # the tiny model has no ranker: the nearest pair is shown
        if editing["systems"]["retrieval"]["rows"]:  # retrieval answers with the neighbour's target itself
            assert editing["systems"]["retrieval"]["identical_to_neighbour"] == 1.0
        assert set(editing["systems"]["model"]["exact_by_band"]) == {"≥0.999", "0.9–0.999", "<0.9"}
        # model + kNN against the model and the retrieval baseline on each headline metric (MACCS FTS too)
        wanted = ("bleu4", "meteor") if task == "mol2text" else ("exact_match", "morgan_fts", "maccs_fts")
        knn_versus = {(c["baseline"], c["metric"]) for c in t["comparisons"] if c["system"] == "model+knn"}
        assert {(b, m) for b in ("model", "retrieval") for m in wanted} <= knn_versus
        # the default system against every published model's predictions, on the same rows
        versus = {(c["baseline"], c["metric"]) for c in t["comparisons"] if c["system"] == best["system"]}
        metrics = ("bleu4", "meteor") if task == "mol2text" else ("morgan_fts", "maccs_fts", "exact_match", "validity")
        assert {(name, m) for name in published for m in metrics} <= versus
        assert any(line.startswith(f"{task}: {best['system']} minus MolT5-small's published predictions: {metrics[0]} ")
                   for line in bench["verdict"])
    assert len(bench["verdict"]) >= 2


def test_bench_metrics_equal_t2m_eval_of_its_prediction_files(bench_dir):
    from evaluation import evaluate_file

    bench = json.loads((bench_dir / "bench.json").read_text())
    for task, name, file in (("text2mol", "model+knn", "model-knn.tsv"), ("mol2text", "retrieval", "retrieval.tsv")):
        result = evaluate_file(bench_dir / "predictions" / task / file, task, fcd=False)
        assert result.n == TEST_ROWS
        for key, value in result.metrics.items():
            got = bench["tasks"][task]["systems"][name]["metrics"][key]
            assert (got is None and math.isnan(value)) or got == pytest.approx(value, abs=1e-12), key


def test_bench_md_plots_and_report_are_written(bench_dir):
    md = (bench_dir / "bench.md").read_text()
    assert "**benchmark setting**" in md and "| model+knn |" in md and "paired bootstrap" in md
    assert "Datastore size" in md and "![Quality against λ (dev slice)](plots/lambda.png)" in md
    for name in ("lambda", "scaling", "speed"):
        data = (bench_dir / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    page = (bench_dir / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 3
    assert page.count('src="data:image/svg+xml;base64,') >= 2 * 2  # molecules: references and inputs at least
    assert "Rows where retrieval changed the output most" in page or "Best rows of model + kNN" in page


def test_report_renders_in_headless_chromium(bench_dir, tmp_path):
    from t2m.report import browser_check, find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium is not installed: `t2m setup --with-chromium` installs Debian's chromium")
    result = browser_check(bench_dir / "report.html", screenshot=tmp_path / "report.png")
    assert result["title"] == "t2m bench report"
    assert result["broken"] == [] and result["loaded"] == result["images"] >= 3 + 4
    assert all(width > 100 for width in result["widths"])  # plots and 220-px molecule drawings
    from PIL import Image

    with Image.open(tmp_path / "report.png") as shot:
        assert shot.size == (1280, 2400)
        assert len(shot.convert("L").getcolors(256 * 256)) > 20  # drawn, not a blank page


def test_a_rerun_reuses_the_decoded_predictions(bench_dir, tiny_model_dir, tiny_chebi20, tmp_path):
    import shutil

    from t2m.bench import BenchConfig, run_bench

    out = tmp_path / "bench"
    shutil.copytree(bench_dir, out)  # the other tests keep the fixture's outputs
    bench = run_bench(BenchConfig(
        out=out, model=tiny_model_dir, data=tiny_chebi20, dev_size=DEV_SIZE, tasks=("mol2text",), beams=(1, 2),
        limit=TEST_ROWS, dev_limit=8, fractions=(0.5, 1.0), index="Flat", fcd=False, bootstrap=50,
        knn_lambdas=(0.0,), sweep_rows=0, max_new_tokens=24, batch_size=8, examples=1, isolate_builds=False,
        progress=False))
    systems = bench["tasks"]["mol2text"]["systems"]
    assert all(s["speed"]["reused_from_cache"] for s in systems.values())
    assert not bench["tasks"]["mol2text"]["datastore"]["built_here"]
    assert not bench["tasks"]["mol2text"]["datastore"]["knn"]["tuned_here"]


def test_decoding_split_over_worker_processes_gives_the_same_numbers(bench_dir, tiny_model_dir, tiny_chebi20,
                                                                     shared_data, tmp_path):
    """--jobs 2: both tasks' stores prepared at once in two spawned processes and every decoding split
    over two worker processes; every system's metrics equal the one-process run's. --scaling-limit 5:
    the datastore-size points (and the model they are compared with) on the first 5 test rows."""
    from t2m.cli import main

    out = tmp_path / "bench_jobs"
    argv = ["bench", "--model", str(tiny_model_dir), "--data", str(tiny_chebi20), "--out", str(out),
            "--published", str(shared_data / "molt5_predictions"),
            "--dev-size", str(DEV_SIZE), "--tasks", "text2mol,mol2text", "--beams", "1,2", "--limit", str(TEST_ROWS),
            "--dev-limit", "8", "--fractions", "0.5,1.0", "--index", "Flat", "--no-fcd", "--bootstrap", "200",
            "--knn-lambdas", "0,0.5,1", "--sweep-rows", "4", "--max-new-tokens", "24", "--batch-size", "8",
            "--examples", "2", "--no-progress", "--jobs", "2", "--scaling-limit", "5"]
    assert main(argv) == 0
    parallel = json.loads((out / "bench.json").read_text())
    sequential = json.loads((bench_dir / "bench.json").read_text())
    for task in ("text2mol", "mol2text"):
        got, want = parallel["tasks"][task]["systems"], sequential["tasks"][task]["systems"]
        assert set(got) == set(want)
        for name in want:
            assert got[name]["metrics"] == want[name]["metrics"], (task, name)
            if name != "retrieval" and not name.startswith("published:"):
                memory = got[name]["memory"]
                assert memory["workers"] == 2 and len(memory["worker_peak_rss_mb"]) in (1, 2)
                assert len(memory["chunk_seconds"]) == (TEST_ROWS if "%" not in name else 5)
        scaling = parallel["tasks"][task]["scaling"]
        assert scaling["rows"] == 5 and sequential["tasks"][task]["scaling"]["rows"] == TEST_ROWS
        half = next(p for p in scaling["points"] if p["fraction"] == 0.5)
        assert half["speed"]["rows"] == 5
        assert set(scaling["baselines"]) == {"model@greedy", "retrieval"}
    assert parallel["machine"]["decode_workers"] == {"processes": 2, "threads_each": 1}
    assert (out / "bench.md").is_file() and (out / "report.html").is_file()
    assert "split over 2 worker processes" in (out / "bench.md").read_text()


def test_a_bench_tuned_for_nearest_pairs_decodes_with_them(tiny_model_dir, tiny_chebi20, tmp_path):
    """--pairs 1: the new store is tuned over the one-nearest-pair scope only, the tuned scope is written
    into it, and the model + kNN runs (split over two workers) and the λ sweep use it: their outputs are
    what Translator gives with the same settings in this process."""
    from datastore.store import Datastore
    from evaluation.predictions import read_predictions
    from t2m.cli import main
    from t2m.data import load_chebi20_records
    from t2m.decoding.translator import Translator
    from t2m.options import DecodingOptions, RetrievalOptions

    out = tmp_path / "bench_pairs"
    argv = ["bench", "--model", str(tiny_model_dir), "--data", str(tiny_chebi20), "--out", str(out),
            "--dev-size", str(DEV_SIZE), "--tasks", "mol2text", "--beams", "1", "--limit", str(TEST_ROWS),
            "--dev-limit", "8", "--fractions", "1.0", "--index", "Flat", "--bootstrap", "50", "--pairs", "1",
            "--knn-lambdas", "0.5", "--sweep-rows", "2", "--max-new-tokens", "16", "--batch-size", "8",
            "--examples", "1", "--no-progress", "--jobs", "2", "--in-process"]
    assert main(argv) == 0
    bench = json.loads((out / "bench.json").read_text())["tasks"]["mol2text"]
    params = Datastore.load(out / "stores" / "mol2text").knn_params
    assert params.pairs == 1 and bench["datastore"]["knn"]["pairs"] == 1
    assert bench["systems"]["model+knn"]["settings"]["knn"]["pairs"] == 1
    assert bench["lambda_sweep"]["pairs"] == 1
    test = load_chebi20_records(tiny_chebi20, "benchmark", dev_size=DEV_SIZE).test[:TEST_ROWS]
    translator = Translator.from_pretrained(tiny_model_dir)
    want = translator.translate([r["smiles"] for r in test], "mol2text", DecodingOptions(max_new_tokens=16),
                                retrieval=RetrievalOptions(out / "stores" / "mol2text", params))
    written = read_predictions(out / "predictions" / "mol2text" / "model-knn.tsv")
    assert list(written.outputs) == [" ".join(t.output.split("\n")) for t in want]


# ---------------------------------------------------------------------------------- statistics


def test_system_names():
    assert system_name("model", 5, 5) == "model"
    assert system_name("model+knn", 1, 5) == "model+knn@greedy"
    assert system_name("model", 3, 5, rerank=False, task="text2mol") == "model@beam3/no-rerank"
    assert system_name("model", 3, 5, rerank=False, task="mol2text") == "model@beam3"


@pytest.mark.parametrize("strict", [False, True])
def test_the_evaluators_per_row_statistics_give_its_corpus_metrics_on_any_resample(shared_data, strict):
    """The bootstrap's statistics are the evaluator's own (``per_row=True``): all rows once give its corpus
    numbers, and rows counted twice or left out give what it says of the resampled rows."""
    from evaluation import evaluate_mol2text, evaluate_text2mol, read_predictions

    folder = shared_data / "molt5_predictions"
    counts = np.random.default_rng(0).multinomial(60, np.full(60, 1 / 60))
    picked = np.repeat(np.arange(60), counts)
    for task, file, metrics, evaluate in (
            ("text2mol", "molt5-small-caption2smiles.txt", ("exact_match", "validity", "maccs_fts", "rdk_fts",
                                                             "morgan_fts"), partial(evaluate_text2mol, fcd=False)),
            ("mol2text", "molt5-small-smiles2caption.txt", ("bleu4", "bleu2", "meteor"), evaluate_mol2text)):
        predictions = read_predictions(folder / file)
        refs, outs = list(predictions.references[:300]), list(predictions.outputs[:300])
        result = evaluate(refs, outs, strict=strict, per_row=True)
        assert result.rows.task == task and len(result.rows) == 300
        resampled = evaluate([refs[i] for i in picked], [outs[i] for i in picked], strict=strict).metrics
        for metric in metrics:
            assert result.rows.corpus(metric) == pytest.approx(result.metrics[metric], abs=1e-12), metric
            weights = np.zeros(300, dtype=np.int64)
            weights[:60] = counts
            assert result.rows.corpus(metric, weights) == pytest.approx(resampled[metric], abs=1e-12), metric
    assert CaptionScorer()(refs[:5], outs[:5]).corpus("meteor") == pytest.approx(
        evaluate_mol2text(refs[:5], outs[:5]).metrics["meteor"], abs=1e-12)
    assert text2mol_row_scores(["CCO", "C1CC1"], ["CCO", "CC"]).corpus("exact_match") == 0.5


def test_paired_bootstrap_of_a_system_against_itself_and_a_clearly_better_one():
    rng = np.random.default_rng(1)
    n = 400
    base = RowScores("text2mol", {"exact": rng.random(n) < 0.2, "valid": np.ones(n, bool),
                                  "parsed": np.ones(n, bool), "morgan": rng.random(n)})
    same = paired_bootstrap(base, base, "exact_match", 300)
    assert same["delta"] == 0 and same["ci95"] == [0.0, 0.0] and not same["excludes_zero"]
    better = RowScores("text2mol", {**base.values, "exact": base.values["exact"] | (rng.random(n) < 0.3)})
    c = paired_bootstrap(better, base, "exact_match", 300)
    assert c["delta"] == pytest.approx(better.values["exact"].mean() - base.values["exact"].mean())
    assert c["excludes_zero"] and c["ci95"][0] > 0 and c["p_not_better"] == 0.0
    # Morgan FTS averages over parsed outputs only, as the evaluator's MolT5 mode
    partial = RowScores("text2mol", {**base.values, "parsed": np.arange(n) % 2 == 0})
    assert partial.corpus("morgan_fts") == pytest.approx(base.values["morgan"][::2].mean())


def test_published_predictions_are_matched_to_the_test_rows_by_input_and_truth(shared_data, tmp_path, capsys):
    """MolT5's prediction files are not in test.txt's order: each test row gets the prediction of the
    same (input, ground truth); a file that lacks a row is left out, and says so."""
    from evaluation import evaluate_text2mol, read_predictions
    from t2m.bench.published import published_runs
    from t2m.data import read_tsv_records

    test = read_tsv_records(shared_data / "chebi20" / "test.txt")[-30:]
    sources, references = [r["description"] for r in test], [r["smiles"] for r in test]
    runs = published_runs("text2mol", sources, references, shared_data / "molt5_predictions")
    assert list(runs) == ["published:T5-small", "published:MolT5-small", "published:MolT5-base", "published:MolT5-large"]
    file = read_predictions(shared_data / "molt5_predictions" / "molt5-large-caption2smiles.txt")
    expected = {s: o for s, o in zip(file.inputs, file.outputs)}
    assert runs["published:MolT5-large"].outputs == [expected[s] for s in sources]
    exact = evaluate_text2mol(references, runs["published:MolT5-large"].outputs, fcd=False).metrics["exact_match"]
    assert 0 < exact < 1  # real outputs, some right
    lines = (shared_data / "molt5_predictions" / "molt5-small-caption2smiles.txt").read_text().split("\n")
    kept = [line for line in lines if not line.startswith(sources[0] + "\t")]  # drops one of our rows
    (tmp_path / "molt5-small-caption2smiles.txt").write_text("\n".join(kept))
    partial = published_runs("text2mol", sources, references, tmp_path)
    assert partial == {}
    err = capsys.readouterr().err
    assert "t5-v1_1-small-caption2smiles.txt not found; published:T5-small left out" in err
    assert "has no prediction for" in err and "published:MolT5-small left out" in err


def test_an_interrupted_decoding_resumes_from_the_rows_it_kept(tiny_model_dir, tiny_chebi20, tmp_path):
    """The bench keeps every finished chunk of a model decoding beside its prediction cache
    (``<system>.tsv.partial``): a rerun decodes only the rest, gives the outputs and n-best of one whole
    run, and counts the earlier pieces' time; rows kept for other settings are not used."""
    from t2m.bench import BenchConfig
    from t2m.bench.cache import PredictionCache
    from t2m.bench.systems import decode_system
    from t2m.data import load_chebi20_records
    from t2m.decoding.translator import Translator

    torch.set_num_threads(1)
    translator = Translator.from_pretrained(tiny_model_dir)
    sources = [r["smiles"] for r in load_chebi20_records(tiny_chebi20, dev_size=DEV_SIZE).test[:6]]
    config = BenchConfig(out=tmp_path, max_new_tokens=16, batch_size=4, progress=False)
    cache = PredictionCache(tmp_path / "predictions")
    key = {"system": "model", "beam": 2}
    whole = decode_system(translator, "model", sources, "mol2text", 2, True, None, config)

    kept = cache.open_partial("mol2text", "model", key)
    done = translator.translate(sources[:3], "mol2text", config_decoding(config, 2))
    kept.add([0, 1, 2], done, piece="1", elapsed=100.0)  # what an interrupted run left
    kept.close()

    decoded: list[int] = []
    translate = translator.translate
    translator.translate = lambda inputs, *a, **k: (decoded.append(len(inputs)), translate(inputs, *a, **k))[1]
    resumed = cache.open_partial("mol2text", "model", key)
    assert sorted(resumed.done) == [0, 1, 2]
    run = decode_system(translator, "model", sources, "mol2text", 2, True, None, config, kept=resumed)
    resumed.close()
    assert decoded == [2, 3]  # the untimed warm-up, then the three rows left
    assert run.outputs == whole.outputs and run.nbest == whole.nbest
    assert run.seconds >= 100.0 and run.memory["pieces_seconds"][0] == 100.0

    other = cache.open_partial("mol2text", "model", {**key, "beam": 3})
    assert other.done == {}  # another decoding's rows are dropped
    other.remove()


def config_decoding(config, beam):
    from t2m.options import DecodingOptions

    return DecodingOptions(num_beams=beam, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens)
