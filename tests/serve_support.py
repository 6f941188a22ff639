"""What the ``t2m serve`` tests share: one loaded service (the shipped model; the T5 loaded on first use) for
every test of the session, a real uvicorn server on a free loopback port, and plain HTTP calls (urllib)."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest


def require_serve() -> None:
    """Skip, saying how to install them, when the serve extra's packages are missing."""
    for name in ("starlette", "uvicorn"):
        pytest.importorskip(name, reason=f"{name} is not installed: pip install -e '.[serve]' (the test extra has it)")


@functools.lru_cache(maxsize=None)
def shared_service():
    """The shipped model's service (retrieval loaded; the T5 on first use), made once per test session."""
    from t2m.serve.service import TranslationService

    return TranslationService()


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def call(url: str, body: Any = None, method: str | None = None, raw: bytes | None = None,
         timeout: float = 120) -> tuple[int, Any, dict[str, str]]:
    """(status, body -- JSON when it is JSON, else text --, headers) of one request; ``body`` is sent as
    JSON, ``raw`` as it is."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if raw is None and data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        status, payload, headers = err.code, err.read(), dict(err.headers)
    text = payload.decode("utf-8")
    if headers.get("content-type", headers.get("Content-Type", "")).startswith("application/json"):
        return status, json.loads(text), headers
    return status, text, headers
