"""Latency of ``t2m serve``'s ``POST /api/translate`` per request, and a 20-client load test, over a real
uvicorn server on loopback with the shipped model (the figures in docs/serve.md).

    OMP_NUM_THREADS=1 python tests/benchmarks/serve_latency.py            # about a minute on 2 cores
    python tests/benchmarks/serve_latency.py --repeats 7 --json out.json

Each setting (system, beams, task, with or without drawings) is one request of one input, sent once to warm
up and then ``--repeats`` times; the median and the range are printed. The load test: 20 clients at once,
each sending ``--load-requests`` retrieval requests over both tasks, every answer checked against the one
the same request gets alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: serve_support
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: t2m

from serve_support import call, live_server  # noqa: E402

DESCRIPTION = "The molecule is a monocarboxylic acid that is acetic acid in which one of the methyl hydrogens is " \
              "replaced by a phenyl group."
SMILES = "CC(=O)Oc1ccccc1C(=O)O"
SETTINGS = [  # (label, request)
    ("retrieval, mol2text", {"task": "mol2text", "inputs": [SMILES]}),
    ("retrieval, text2mol", {"task": "text2mol", "inputs": [DESCRIPTION]}),
    ("retrieval, text2mol, with drawings", {"task": "text2mol", "inputs": [DESCRIPTION], "draw": True}),
    ("T5 greedy, mol2text", {"task": "mol2text", "inputs": [SMILES], "system": "model"}),
    ("T5 greedy, text2mol", {"task": "text2mol", "inputs": [DESCRIPTION], "system": "model"}),
    ("T5 beam 5, mol2text", {"task": "mol2text", "inputs": [SMILES], "system": "model", "num_beams": 5}),
    ("T5 beam 5, text2mol", {"task": "text2mol", "inputs": [DESCRIPTION], "system": "model", "num_beams": 5}),
]


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    import os

    return f"{name}, {os.cpu_count()} cores"


def latencies(url: str, repeats: int) -> list[dict]:
    rows = []
    for label, request in SETTINGS:
        status, _, _ = call(url + "/api/translate", request)  # warm-up (loads the T5 on its first use)
        assert status == 200, (label, status)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            status, answer, _ = call(url + "/api/translate", request)
            times.append(time.perf_counter() - started)
            assert status == 200
        rows.append({"setting": label, "median_ms": round(statistics.median(times) * 1000, 1),
                     "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1),
                     "server_ms": round(answer["seconds"] * 1000, 1), "repeats": repeats})
        print(f"{label:40s} median {rows[-1]['median_ms']:8.1f} ms  ({rows[-1]['min_ms']}-{rows[-1]['max_ms']})",
              flush=True)
    return rows


def load(url: str, clients: int, per_client: int) -> dict:
    requests = [{"task": "mol2text", "inputs": [s]} for s in ("CCO", SMILES, "C1=CC=C(C=C1)CC(C(=O)O)N")]
    requests += [{"task": "text2mol", "inputs": [DESCRIPTION]}, {"task": "text2mol", "inputs": ["The molecule is benzene."]}]
    expected = {json.dumps(r): call(url + "/api/translate", r)[1]["outputs"] for r in requests}

    def client(number: int) -> list[tuple[bool, float]]:
        found = []
        for i in range(per_client):
            request = requests[(number + i) % len(requests)]
            started = time.perf_counter()
            status, answer, _ = call(url + "/api/translate", request)
            found.append((status == 200 and answer["outputs"] == expected[json.dumps(request)],
                          time.perf_counter() - started))
        return found

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    times = sorted(t for _, t in results)
    return {"clients": clients, "requests": len(results), "correct": sum(ok for ok, _ in results),
            "wall_s": round(wall, 2), "requests_per_s": round(len(results) / wall, 1),
            "median_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1), "max_ms": round(times[-1] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--load-requests", type=int, default=10, help="requests per client in the load test")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from t2m.serve.app import create_app

    started = time.perf_counter()
    app = create_app(load_model=True)
    loaded = time.perf_counter() - started
    print(f"machine: {machine()}; model and database loaded in {loaded:.1f} s", flush=True)
    with live_server(app) as url:
        rows = latencies(url, args.repeats)
        figures = load(url, args.clients, args.load_requests)
    print("load test:", json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "load_s": round(loaded, 1), "latency": rows,
                                         "load": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
