"""The web app of ``t2m serve``: a Starlette application over :class:`t2m.serve.service.TranslationService`.

Routes (docs/serve.md has them with examples):

- ``GET /`` the page, and ``GET /static/NAME`` its script and style, served from the package (no network);
- ``GET /api/health``: the model, its default systems, the limits, the versions;
- ``POST /api/translate``: ``{"task", "inputs", "system"?, "num_beams"?, "draw"?}`` -> ``{"outputs": [...]}``;
- ``POST /api/files?task=&system=&num_beams=&format=&name=`` with a file as the body: starts its
  translation; ``GET /api/files/ID`` its progress; ``GET /api/files/ID/output`` the finished file.

Every error is JSON ``{"error": "one line naming the fix"}`` with a 4xx status (500 for a bug, which leaves
the server up); the page shows the same words.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from t2m.errors import error_line
from t2m.serve.files import FileJobs, MEDIA_TYPE
from t2m.serve.service import ApiError, Limits, TranslationService, _count

log = logging.getLogger(__name__)

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
NO_CACHE = {"Cache-Control": "no-store"}
# a body over its limit is still read (and dropped) up to this size, so that the client gets the 413's message
DRAIN_BYTES = 64_000_000


def _asset(name: str) -> bytes:
    return (resources.files("t2m.serve") / "static" / name).read_bytes()


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_CACHE)


async def read_body(request: Request, limit: int, what: str, option: str) -> bytes:
    """The request's body, refused (413, naming the limit and its option) past ``limit`` bytes. The rest of
    a body up to :data:`DRAIN_BYTES` is read and dropped first: a server that closes the connection on
    unread data resets it, and the client may never see the message."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        error = ApiError(413, f"{what} of {_count(int(declared))} bytes; the limit is {_count(limit)} ({option})")
        if int(declared) > DRAIN_BYTES:
            raise error
        async for _ in request.stream():
            pass
        raise error
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise ApiError(413, f"{what} over {_count(limit)} bytes, the limit ({option})")
    return b"".join(chunks)


def _int(value: str | None) -> Any:
    """A query parameter read as a whole number (None when absent; the text itself when it is not one, for
    the check to refuse)."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def create_app(model: str | Path | None = None, database: str | Path | None = None, knn: Sequence[str | Path] = (),
               limits: Limits | None = None, allow_pickle: bool = False, load_model: bool = False,
               service: TranslationService | None = None) -> Starlette:
    """The ``t2m serve`` app (an ASGI application: ``uvicorn.run(create_app())``). ``model`` (None: the
    shipped model), ``database``, ``knn`` (datastore folders, one per task), ``limits`` and ``load_model``
    (load the T5 now, else on its first use) as :class:`TranslationService` takes them; or a loaded
    ``service``. The service is ``app.state.service``."""
    service = service or TranslationService(model, database, knn, limits, allow_pickle, load_model)
    files = FileJobs(service)

    async def page(request: Request) -> Response:
        return Response(_asset("index.html"), media_type=STATIC["index.html"], headers=NO_CACHE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            raise ApiError(404, f"no such file: /static/{name}")
        return Response(_asset(name), media_type=STATIC[name], headers=NO_CACHE)

    async def health(request: Request) -> Response:
        return JSONResponse(service.health(), headers=NO_CACHE)

    async def translate(request: Request) -> Response:
        body = await read_body(request, service.limits.request_bytes(), "a request",
                               "t2m serve --max-inputs and --max-chars set it")
        # checked (RDKit parses each SMILES) and answered in a worker thread: the event loop stays free
        answer = await run_in_threadpool(lambda: service.answer(service.check_request(body)))
        return JSONResponse(answer, headers=NO_CACHE)

    async def upload(request: Request) -> Response:
        query = request.query_params
        data = await read_body(request, service.limits.max_upload_bytes, "a file", "t2m serve --max-upload-bytes")
        job = await run_in_threadpool(files.start, data, query.get("name") or "upload.txt", query.get("task"),
                                      query.get("system") or None, _int(query.get("num_beams")),
                                      query.get("format") or "auto")
        return JSONResponse(job.status(), status_code=202, headers=NO_CACHE)

    async def file_status(request: Request) -> Response:
        return JSONResponse(files.get(request.path_params["id"]).status(), headers=NO_CACHE)

    async def file_output(request: Request) -> Response:
        job = files.get(request.path_params["id"])
        if job.state != "done":
            why = job.error if job.state == "failed" else f"{job.done} of {job.rows} rows done; wait for the rest"
            raise ApiError(409, f"the file {job.name} is not translated: {why}")
        headers = {**NO_CACHE, "Content-Disposition": f'attachment; filename="{job.download_name()}"'}
        return Response(job.text.encode("utf-8"), media_type=f"{MEDIA_TYPE[job.inputs.kind]}; charset=utf-8",
                        headers=headers)

    async def api_error(request: Request, error: ApiError) -> Response:
        return error_response(error.status, error.message)

    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 404:
            return error_response(404, f"no such page: {request.url.path}; the page is / and the API /api/translate, "
                                       "/api/health, /api/files")
        if error.status_code == 405:
            return error_response(405, f"{request.method} {request.url.path} is not served; see docs/serve.md for "
                                       "each route's method")
        return error_response(error.status_code, str(error.detail))

    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"the server failed on this request ({type(error).__name__}: "
                                   f"{error_line(error)[:200]}); it is still running: report this with the input")

    routes = [
        Route("/", page), Route("/static/{name}", static), Route("/api/health", health),
        Route("/api/translate", translate, methods=["POST"]), Route("/api/files", upload, methods=["POST"]),
        Route("/api/files/{id}", file_status), Route("/api/files/{id}/output", file_output),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error,
                                                       Exception: server_error})
    app.state.service = service
    app.state.files = files
    return app
