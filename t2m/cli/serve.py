"""``t2m serve``: a thin wrapper over :func:`t2m.serve.create_app` run by uvicorn: the page and its JSON API
on http://127.0.0.1:8000/ (docs/serve.md). Binds to this machine only unless ``--host`` says otherwise, and
then says so. Needs the ``serve`` extra (Starlette, uvicorn)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from t2m.cli.checks import UsageError, usage_errors
from t2m.errors import check_range
from t2m.serve.app import create_app
from t2m.serve.service import Limits

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# option -> (Limits field, help)
LIMIT_OPTIONS = {
    "--max-chars": ("max_chars", "characters per input"),
    "--max-inputs": ("max_inputs", "inputs per POST /api/translate"),
    "--max-upload-bytes": ("max_upload_bytes", "bytes of an uploaded file"),
    "--max-file-rows": ("max_file_rows", "rows of an uploaded file"),
    "--max-beams": ("max_beams", "num_beams a request may ask for"),
    "--max-files": ("max_files", "uploaded files translated at once"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything but 127.0.0.1/localhost lets other machines use the page "
                             "(there is no login)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--model", help="checkpoint directory (default: the model shipped with t2m)")
    parser.add_argument("--database", type=Path, metavar="FILE",
                        help="training pairs (ChEBI-20 TSV or JSONL) retrieval and the model's neighbours come from "
                             "(default: the model's own memory)")
    parser.add_argument("--knn", metavar="STORE", action="append", default=[],
                        help="kNN-MT datastore folder built for this model (t2m datastore build): adds the system "
                             "model+knn for its task; once per task (default: none)")
    parser.add_argument("--lazy", action="store_true",
                        help="load the T5 on its first use instead of at start (retrieval answers from the start)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled weights (pytorch_model.bin); only for checkpoints you trust")
    defaults = Limits()
    for option, (field, what) in LIMIT_OPTIONS.items():
        parser.add_argument(option, type=int, metavar="N", default=getattr(defaults, field), help=f"limit: {what}")


def check_options(args) -> None:
    """Refuse options the server cannot use, before the model loads (UsageError, exit 2)."""
    with usage_errors(args):
        check_range("port", args.port, 0, 65535, rule="must be in [0, 65535] (0: any free port)")
        for field, _ in LIMIT_OPTIONS.values():
            check_range(field, getattr(args, field), 1, rule="must be 1 or more")
    if args.database is not None and not Path(args.database).is_file():
        raise UsageError(f"--database {args.database}: no such file; give a ChEBI-20-format TSV (or JSONL) of "
                         "training pairs")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; UsageError naming the fix when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UsageError(f"--host {host}: not an address of this machine ({err.strerror}); give e.g. 127.0.0.1")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        fix = "choose another --port" if err.errno in (98, 48) else "choose another --host or --port"
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); {fix}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise UsageError(f"t2m serve needs the serve extra ({err.name} is not installed): pip install -e '.[serve]' "
                         "(Starlette and uvicorn)") from None

    check_options(args)
    sock = bind(args.host, args.port)
    limits = Limits(**{field: getattr(args, field) for field, _ in LIMIT_OPTIONS.values()})
    print("t2m serve: loading the model" + (" (the T5 on its first use)" if args.lazy else "") + " ...",
          file=sys.stderr)
    app = create_app(args.model, args.database, args.knn, limits, args.allow_pickle, load_model=not args.lazy)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.host not in LOCAL_HOSTS:
        print(f"t2m serve: WARNING: listening on {shown}:{port}, which other machines can reach: anyone who can "
              "connect can use this page and its API (there is no login); use --host 127.0.0.1 to keep it on this "
              "machine", file=sys.stderr)
    print(f"t2m serve: http://{shown}:{port}/ (the API: /api/translate, /api/health; Ctrl-C stops)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C is how a server stops: not an interrupted job
        pass
    print("t2m serve: stopped", file=sys.stderr)
    return 0
