"""``t2m serve``'s JSON API over a real uvicorn server on loopback: the shapes of ``POST /api/translate`` and
``GET /api/health``, every bad input of issue 31 answered with a 4xx and one line (the server up after each),
uploaded files written as ``t2m translate`` writes them, 20 concurrent clients answered correctly, and the
command line (``t2m serve``: the warning off localhost, its usage errors)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serve_support import call, live_server, require_serve, shared_service

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = "The molecule is a primary alcohol that is ethane substituted by a hydroxy group."
SMILES = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "C1=CC=C(C=C1)CC(C(=O)O)N"]


@pytest.fixture(scope="module")
def server():
    require_serve()
    from t2m.serve.app import create_app

    with live_server(create_app(service=shared_service())) as url:
        yield url


def translate(url: str, body, **kwargs):
    return call(url + "/api/translate", body, **kwargs)


def assert_up(url: str) -> None:
    status, health, _ = call(url + "/api/health")
    assert status == 200 and health["status"] == "ok"


# ------------------------------------------------------------------------------------------ shapes


def test_health_names_the_model_its_default_systems_and_versions(server):
    status, health, headers = call(server + "/api/health")
    assert status == 200 and headers["content-type"].startswith("application/json")
    service = shared_service()
    assert health["model"]["shipped"] is True and set(health["model"]["tasks"]) == {"text2mol", "mol2text"}
    for task in ("text2mol", "mol2text"):
        assert health["tasks"][task]["default_system"] == service.info.default_system(task)
        assert health["tasks"][task]["systems"] == ["retrieval", "model"]  # no --knn store: no model+knn
    assert health["database"]["pairs"] == len(service.retriever.database)
    assert {"t2m", "python", "torch", "transformers", "rdkit", "starlette", "uvicorn"} <= set(health["versions"])
    assert health["limits"]["max_inputs"] == service.limits.max_inputs


@pytest.mark.parametrize("task, inputs", [("mol2text", SMILES), ("text2mol", [DESCRIPTION, "The molecule is benzene."])])
def test_translate_answers_in_the_documented_shape(server, task, inputs):
    status, answer, _ = translate(server, {"task": task, "inputs": inputs})
    assert status == 200
    assert answer["task"] == task and answer["system"] == "retrieval"
    expected = shared_service().run(task, inputs, "retrieval")
    assert [o["input"] for o in answer["outputs"]] == inputs
    for out, result in zip(answer["outputs"], expected):
        assert {"input", "output", "candidates", "flags", "neighbours"} <= set(out)
        assert out["output"] == result.output and out["candidates"][0] == out["output"]
        assert out["flags"] == [] and out["valid"] is True
        assert out["neighbours"] and all(set(n) == {"similarity", "source", "target"} for n in out["neighbours"])
        assert all(0 <= n["similarity"] <= 1 for n in out["neighbours"])
        assert "drawing" not in out  # drawings only when asked for


def test_drawings_are_rdkit_svg_when_asked_for(server):
    status, answer, _ = translate(server, {"task": "text2mol", "inputs": [DESCRIPTION], "draw": True})
    out = answer["outputs"][0]
    assert status == 200 and "<svg" in out["drawing"] and "</svg>" in out["drawing"]
    assert len(out["candidate_drawings"]) == len(out["candidates"]) and all("<svg" in d for d in out["candidate_drawings"])
    assert all("<svg" in n["drawing"] for n in out["neighbours"])
    status, answer, _ = translate(server, {"task": "mol2text", "inputs": ["CCO"], "draw": True})
    assert "<svg" in answer["outputs"][0]["drawing"]  # the input molecule


def test_the_t5_greedy_and_beam_search(server):
    status, answer, _ = translate(server, {"task": "mol2text", "inputs": ["CCO"], "system": "model"})
    out = answer["outputs"][0]
    assert status == 200 and answer["system"] == "model" and out["output"].startswith("The molecule")
    assert len(out["candidates"]) == 1 and len(out["neighbours"]) == 1  # the pair the T5 read
    status, answer, _ = translate(server, {"task": "text2mol", "inputs": [DESCRIPTION], "system": "model",
                                           "num_beams": 3})
    out = answer["outputs"][0]
    assert status == 200 and answer["num_beams"] == 3 and len(out["candidates"]) == 3
    from t2m.chem import is_valid_smiles

    assert out["output"] in out["candidates"] and out["valid"] == is_valid_smiles(out["output"])


# ------------------------------------------------------------------------------------------ bad inputs

BIG = {"task": "text2mol", "inputs": ["a" * 100_000]}
BAD_REQUESTS = [
    # (case, body (bytes are sent as they are), status, words the message must hold)
    ("an invalid SMILES", {"task": "mol2text", "inputs": ["C1CC("]}, 422, "not a SMILES RDKit can read"),
    ("an empty box", {"task": "text2mol", "inputs": [""]}, 400, "the input is empty: type a description"),
    ("a box of spaces", {"task": "mol2text", "inputs": ["  \n "]}, 400, "the input is empty: type a SMILES"),
    ("a 100 kB paste", BIG, 413, "has 100,000 characters; the limit is 5,000 (t2m serve --max-chars)"),
    ("10,000 inputs", {"task": "mol2text", "inputs": ["CCO"] * 10_000}, 413,
     "10,000 inputs in one request; the limit is 100 (t2m serve --max-inputs)"),
    ("a wrong task", {"task": "smiles2text", "inputs": ["CCO"]}, 400, "task 'smiles2text'"),
    ("no task", {"inputs": ["CCO"]}, 400, "task missing"),
    ("malformed JSON", b'{"task": "mol2text", "inputs": ["CCO"', 400, "not valid JSON"),
    ("JSON that is not an object", b'["CCO"]', 400, "a JSON list, not an object"),
    ("a body that is not UTF-8", b'\xff\xfe{"task"', 400, "not UTF-8"),
    ("inputs as a string", {"task": "mol2text", "inputs": "CCO"}, 400, "give \"inputs\" as a list of strings"),
    ("no inputs", {"task": "mol2text", "inputs": []}, 400, "at least one input"),
    ("a number among the inputs", {"task": "mol2text", "inputs": ["CCO", 5]}, 400, "a list with a non-string"),
    ("an unknown system", {"task": "mol2text", "inputs": ["CCO"], "system": "gpt"}, 400, "choose one of retrieval, model"),
    ("model+knn without a store", {"task": "mol2text", "inputs": ["CCO"], "system": "model+knn"}, 400, "--knn STORE"),
    ("num_beams 0", {"task": "mol2text", "inputs": ["CCO"], "num_beams": 0}, 400, "from 1 (greedy search) to 10"),
    ("num_beams over the limit", {"task": "mol2text", "inputs": ["CCO"], "num_beams": 11}, 400, "--max-beams"),
    ("num_beams as text", {"task": "mol2text", "inputs": ["CCO"], "num_beams": "5"}, 400, "num_beams \"5\""),
    ("an unknown key", {"task": "mol2text", "inputs": ["CCO"], "beams": 5}, 400, "unknown key 'beams'"),
    ("a body over the request limit", b"[" + b" " * 3_000_000 + b"]", 413, "the limit is"),
]


@pytest.mark.parametrize("case, body, status, words", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_every_bad_request_gets_a_4xx_and_one_line(server, case, body, status, words):
    got, answer, _ = translate(server, None, raw=body) if isinstance(body, bytes) else translate(server, body)
    assert got == status, answer
    assert set(answer) == {"error"} and words in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"] and len(answer["error"]) < 300
    assert_up(server)


def test_a_failure_inside_is_a_json_500_and_the_server_stays_up(server, monkeypatch):
    from t2m.serve.service import TranslationService

    def broken(self, request):
        raise RuntimeError("decoding state\ncorrupted")

    monkeypatch.setattr(TranslationService, "answer", broken)
    status, answer, _ = translate(server, {"task": "mol2text", "inputs": ["CCO"]})
    assert status == 500 and answer["error"].startswith("the server failed on this request (RuntimeError: decoding "
                                                        "state corrupted); it is still running")
    monkeypatch.undo()
    assert translate(server, {"task": "mol2text", "inputs": ["CCO"]})[0] == 200


BAD_ROUTES = [
    ("GET on the translate route", "/api/translate", None, 405, "GET /api/translate is not served"),
    ("an unknown page", "/api/nothing", None, 404, "no such page: /api/nothing"),
    ("an unknown static file", "/static/../setup.cfg", None, 404, "no such"),
    ("an unknown file id", "/api/files/999", None, 404, "no file '999'"),
]


@pytest.mark.parametrize("case, path, body, status, words", BAD_ROUTES, ids=[c[0] for c in BAD_ROUTES])
def test_bad_routes_get_a_json_error(server, case, path, body, status, words):
    got, answer, _ = call(server + path, body)
    assert got == status and words in answer["error"], answer
    assert_up(server)


def upload(url: str, data: bytes, **query):
    from urllib.parse import urlencode

    return call(f"{url}/api/files?{urlencode(query)}", raw=data)


BAD_UPLOADS = [
    ("a binary upload", bytes(range(256)) * 8, {"name": "x.bin"}, 400,
     "the file x.bin: a binary file, not text; give a UTF-8 text, TSV or JSONL file"),
    ("a file that is not UTF-8", "CCO\néthanol\n".encode("latin-1"), {"name": "x.txt"}, 400, "x.txt:2: not UTF-8"),
    ("an empty file", b"", {"name": "x.txt"}, 400, "the file x.txt is empty"),
    ("a file over the upload limit", b"CCO\n" * 500_001, {"name": "big.txt"}, 413, "(t2m serve --max-upload-bytes)"),
    ("a file of too many rows", b"CCO\n" * 2001, {"name": "rows.txt"}, 413,
     "has 2,001 rows; the limit is 2,000 (t2m serve --max-file-rows)"),
    ("a TSV without the input column", b"CID\tdescription\n1\tethanol\n", {"name": "x.tsv"}, 400,
     "without a 'smiles' column"),
    ("a wrong task", b"CCO\n", {"name": "x.txt", "task": "foo"}, 400, "task 'foo'"),
    ("a wrong format", b"CCO\n", {"name": "x.txt", "format": "csv"}, 400, "format 'csv'"),
    ("beams that are no number", b"CCO\n", {"name": "x.txt", "system": "model", "num_beams": "many"}, 400,
     "num_beams \"many\""),
]


@pytest.mark.parametrize("case, data, query, status, words", BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_every_bad_upload_gets_a_4xx_and_one_line(server, case, data, query, status, words):
    got, answer, _ = upload(server, data, **{"task": "mol2text", **query})
    assert got == status and words in answer["error"], answer
    assert "\n" not in answer["error"]
    assert_up(server)


# ------------------------------------------------------------------------------------------ files


def wait_done(url: str, job: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        _, job, _ = call(f"{url}/api/files/{job['id']}")
    return job


@pytest.mark.parametrize("name, text", [
    ("pairs.tsv", "CID\tSMILES\tdescription\n1\tCCO\tethanol\n2\tnot a smiles\tnothing\n3\tc1ccccc1\tbenzene\n"),
    ("molecules.jsonl", '{"cid": "7", "smiles": "CCO"}\n{"smiles": "c1ccccc1"}\n{broken\n'),
    ("molecules.txt", "CCO\nc1ccccc1\n"),
])
def test_an_uploaded_file_comes_back_as_t2m_translate_writes_it(server, tmp_path, name, text):
    from t2m.translate_job import TranslateJob, run_translation

    status, job, _ = upload(server, text.encode(), task="mol2text", name=name)
    assert status == 202 and job["rows"] == len(text.strip().splitlines()) - name.endswith(".tsv")
    job = wait_done(server, job)
    assert job["state"] == "done" and job["done"] == job["rows"], job
    status, body, headers = call(server + job["download"])
    assert status == 200 and f'filename="{job["download_name"]}"' in headers["content-disposition"]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    # what `t2m translate --task mol2text --system retrieval --input FILE` writes (the same loaded database)
    done = run_translation(TranslateJob(task="mol2text", input=path, system="retrieval",
                                        database=shared_service().retriever.database))
    assert body == done.text
    assert job["flagged"] == sum(1 for r in done.results if r.flags) >= (0 if name.endswith(".txt") else 1)


def test_too_many_files_at_once_are_refused_while_the_others_finish(server):
    service = shared_service()
    with service._lock:  # the model busy: the files wait for it
        started = [upload(server, b"CCO\n", task="mol2text", name=f"f{i}.txt") for i in range(service.limits.max_files)]
        assert [s for s, _, _ in started] == [202] * service.limits.max_files
        status, answer, _ = upload(server, b"CCO\n", task="mol2text", name="one-more.txt")
        assert status == 429 and "(t2m serve --max-files)" in answer["error"]
        status, answer, _ = call(f"{server}/api/files/{started[0][1]['id']}/output")
        assert status == 409 and "not translated: 0 of 1 rows done" in answer["error"]
    assert all(wait_done(server, job)["state"] == "done" for _, job, _ in started)


# ------------------------------------------------------------------------------------------ load


def test_twenty_concurrent_clients_get_correct_answers(server):
    """20 clients at once on loopback, each 3 retrieval requests over both tasks; 4 of them a T5 request
    too: every answer is the one the same request gets alone."""
    requests = [{"task": "mol2text", "inputs": [s]} for s in SMILES]
    requests += [{"task": "text2mol", "inputs": [DESCRIPTION]}, {"task": "text2mol", "inputs": ["The molecule is benzene."]}]
    t5 = [{"task": "mol2text", "inputs": ["CCO"], "system": "model"},
          {"task": "text2mol", "inputs": [DESCRIPTION], "system": "model"}]
    expected = {json.dumps(r): translate(server, r)[1]["outputs"] for r in requests + t5}

    def client(number: int) -> list[tuple[bool, float]]:
        mine = [requests[(number + i) % len(requests)] for i in range(3)] + ([t5[number % 2]] if number < 4 else [])
        found = []
        for request in mine:
            started = time.perf_counter()
            status, answer, _ = translate(server, request, timeout=120)
            found.append((status == 200 and answer["outputs"] == expected[json.dumps(request)],
                          time.perf_counter() - started))
        return found

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = [r for rs in pool.map(client, range(20), timeout=180) for r in rs]
    wall = time.perf_counter() - started
    assert all(ok for ok, _ in results), f"{sum(not ok for ok, _ in results)} of {len(results)} answers wrong"
    latencies = sorted(seconds for _, seconds in results)
    figures = {"clients": 20, "requests": len(results), "t5_requests": 4, "wall_s": round(wall, 3),
               "requests_per_s": round(len(results) / wall, 2), "median_ms": round(statistics.median(latencies) * 1000),
               "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000), "max_ms": round(latencies[-1] * 1000)}
    print("load test:", json.dumps(figures))
    if os.environ.get("T2M_SERVE_LOAD_REPORT"):
        Path(os.environ["T2M_SERVE_LOAD_REPORT"]).write_text(json.dumps(figures, indent=2) + "\n")
    assert_up(server)


# ------------------------------------------------------------------------------------------ the command line


def t2m(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "t2m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.mark.parametrize("args, words", [
    (["--port", "70000"], "--port 70000: must be in [0, 65535]"),
    (["--max-chars", "0"], "--max-chars 0: must be 1 or more"),
    (["--database", "no-such.tsv"], "--database no-such.tsv: no such file"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: not an address of this machine"),
])
def test_serve_usage_errors_are_one_line_before_any_model_loads(args, words):
    require_serve()
    done = t2m("serve", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"t2m serve: error: {done.stderr.split('error: ', 1)[1].strip()}"]
    assert words in done.stderr


def test_serve_refuses_a_port_in_use(server):
    port = server.rsplit(":", 1)[1]
    done = t2m("serve", "--port", port)
    assert done.returncode == 2 and f"--host 127.0.0.1 --port {port}: cannot listen there" in done.stderr
    assert "choose another --port" in done.stderr


def test_serve_off_localhost_says_so_and_serves_the_page():
    require_serve()
    process = subprocess.Popen([sys.executable, "-m", "t2m", "serve", "--host", "0.0.0.0", "--port", "0", "--lazy"],
                               cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any(line.startswith("t2m serve: http://") for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.1)
        warning = next(line for line in lines if "WARNING" in line)
        assert "which other machines can reach" in warning and "--host 127.0.0.1" in warning
        port = next(line for line in lines if line.startswith("t2m serve: http://")).split(":")[3].split("/")[0]
        status, page, _ = call(f"http://127.0.0.1:{port}/")
        assert status == 200 and '<script src="/static/app.js">' in page and "http" not in page.split("<body>")[0]
        for asset in ("app.js", "style.css"):
            status, text, _ = call(f"http://127.0.0.1:{port}/static/{asset}")
            assert status == 200 and "http://" not in text and "https://" not in text  # nothing from the network
        assert call(f"http://127.0.0.1:{port}/api/health")[1]["model"]["t5_loaded"] is False  # --lazy
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


# ------------------------------------------------------------------------------------------ kNN-MT


def test_a_knn_store_adds_the_model_knn_system(tiny_chebi20, tmp_path):
    """With a mol2text datastore of the shipped model (built here over a few real pairs), mol2text offers
    model+knn and decodes with it; text2mol does not offer it."""
    require_serve()
    import copy

    from t2m.knn.store import build_task_datastore
    from t2m.model.checkpoint import default_model_dir
    from t2m.options import open_store
    from t2m.serve.app import create_app

    out = build_task_datastore(default_model_dir(), "mol2text", tmp_path / "mol2text", tiny_chebi20,
                               setting="benchmark", dev_size=20, index_factory="Flat", fraction=0.2, progress=False)
    service = copy.copy(shared_service())  # the loaded translators and the lock shared, the stores its own
    service.stores = {"mol2text": open_store(out, field="knn")}
    with live_server(create_app(service=service)) as url:
        health = call(url + "/api/health")[1]
        assert health["tasks"]["mol2text"]["systems"] == ["retrieval", "model", "model+knn"]
        assert health["tasks"]["text2mol"]["systems"] == ["retrieval", "model"]
        status, answer, _ = translate(url, {"task": "mol2text", "inputs": ["CCO"], "system": "model+knn"})
        assert status == 200 and answer["system"] == "model+knn" and answer["outputs"][0]["output"]
        status, answer, _ = translate(url, {"task": "text2mol", "inputs": ["ethanol"], "system": "model+knn"})
        assert status == 400 and "a text2mol datastore" in answer["error"]
