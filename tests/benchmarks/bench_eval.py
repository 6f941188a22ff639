"""Benchmark ``t2m eval`` (wall time, Python start-up included) against a straightforward evaluation.

    python tests/benchmarks/bench_eval.py                 # warm cache, 3 runs per task, plus baseline
    python tests/benchmarks/bench_eval.py --cold          # every run with an empty cache directory
    python tests/benchmarks/bench_eval.py --runs 5 --no-baseline --json bench_out/eval.json

Each measurement is a fresh process (``t2m eval FILE --json ...``) timed hyperfine-style: wall time per
run, mean ± sd, min, max, and the CPU seconds of the whole process tree (from getrusage of waited
children), with the 1-minute load average before each run -- on a shared 2-core machine a busy neighbour
shows up there. "baseline" is the straightforward single-process computation of the same numbers (MolT5's
logic with nltk, rouge-score, transformers' BertTokenizerFast and fcd.get_fcd), run in a fresh process too.
Every run's numbers are checked against EXPECTED.tsv (0.0005; FCD 0.01) and must be identical across runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("T2M_SHARED_DATA", REPO.parent / "shared" / "data"))
PRED_DIR = SHARED / "molt5_predictions"
DEFAULT_FILES = ("molt5-large-caption2smiles.txt", "molt5-large-smiles2caption.txt")


def baseline(path: Path) -> dict[str, float]:
    """Straightforward single-process MolT5 computation (what the issue's 17 s / 8 s figures time)."""
    sys.path.insert(0, str(REPO / "tests"))
    from molt5_reference import molt5_mol2text, molt5_text2mol

    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    refs, outs = [r["ground truth"] for r in rows], [r["output"] for r in rows]
    if "description" in rows[0]:
        return molt5_text2mol(refs, outs, fcd_njobs=None)
    from evaluation.wordnet import load_wordnet_reader, require_wordnet

    return molt5_mol2text(refs, outs, SHARED / "scibert_scivocab_uncased", load_wordnet_reader(require_wordnet()))


def expected(name: str) -> dict[str, float]:
    with open(PRED_DIR / "EXPECTED.tsv", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if r["file"] == name:
                return {k: float(v) for k, v in r.items() if k not in ("file", "task") and v}
    return {}


def check(name: str, metrics: dict[str, float]) -> str:
    bad = [
        f"{k}={metrics[k]:.4f} (want {v})"
        for k, v in expected(name).items()
        if k in metrics and abs(metrics[k] - v) > (0.01 if k == "fcd" else 0.0005)
    ]
    return "ok" if not bad else "MISMATCH " + ", ".join(bad)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, cpu, proc


def bench(label: str, make_cmd, name: str, runs: int, cold: bool) -> dict:
    walls, cpus, loads, results = [], [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ)
            if cold:  # empty derived-data cache (METEOR table, reference records/statistics); WordNet stays
                from evaluation.wordnet import project_nltk_data_dir

                env["T2M_NLTK_DATA"] = str(project_nltk_data_dir())
                env["T2M_CACHE_DIR"] = str(Path(tmp) / "cache")
            out = Path(tmp) / "out.json"
            loads.append(os.getloadavg()[0])
            wall, cpu, _ = timed(make_cmd(out), env)
            walls.append(wall)
            cpus.append(cpu)
            results.append(json.loads(out.read_text())["metrics"])
    keys = [k for k in results[0] if k in expected(name)]
    identical = all({k: r[k] for k in keys} == {k: results[0][k] for k in keys} for r in results)
    return {
        "command": label,
        "runs": runs,
        "mean": statistics.mean(walls),
        "sd": statistics.stdev(walls) if runs > 1 else 0.0,
        "min": min(walls),
        "max": max(walls),
        "cpu": statistics.mean(cpus),
        "load": statistics.mean(loads),
        "check": check(name, results[0]) + ("" if identical else " (runs differ!)"),
        "metrics": results[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="names in molt5_predictions/")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="empty cache directory for every t2m run")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--baseline-runs", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--baseline-run", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)  # internal: FILE OUT
    args = ap.parse_args(argv)

    if args.baseline_run is not None:  # child process of the baseline measurement
        path, out = args.baseline_run
        out.write_text(json.dumps({"metrics": baseline(path)}))
        return 0
    if not PRED_DIR.is_dir():
        print(f"shared data not found at {PRED_DIR} (set T2M_SHARED_DATA)", file=sys.stderr)
        return 2
    t2m = [sys.executable, "-m", "t2m"]
    rows = []
    for name in args.files:
        path = PRED_DIR / name

        def t2m_cmd(out, path=path):
            return [*t2m, "eval", str(path), "--json", str(out)]

        rows.append(
            bench(f"t2m eval {name}" + (" (cold cache)" if args.cold else ""), t2m_cmd, name, args.runs, args.cold)
        )
        print(f"{rows[-1]['command']}: {rows[-1]['mean']:.2f} s", file=sys.stderr)
        if not args.no_baseline:

            def baseline_cmd(out, path=path):
                return [sys.executable, __file__, "--baseline-run", str(path), str(out)]

            rows.append(bench(f"baseline {name}", baseline_cmd, name, args.baseline_runs, cold=False))
            print(f"{rows[-1]['command']}: {rows[-1]['mean']:.2f} s", file=sys.stderr)

    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  runs   mean ± sd (s)    min     max   cpu(s)  load1  check")
    for r in rows:
        print(
            f"{r['command']:<{width}}  {r['runs']:>4}  {r['mean']:6.2f} ± {r['sd']:4.2f}"
            f"  {r['min']:6.2f}  {r['max']:6.2f}"
            f"  {r['cpu']:6.1f}  {r['load']:5.2f}  {r['check']}"
        )
    print(
        f"machine: {os.cpu_count()} CPUs; load1 = 1-minute load average before each run (>0.5 means a busy neighbour)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
