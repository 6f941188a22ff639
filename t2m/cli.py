"""The ``t2m`` command line.

Each subcommand lives in the module named in ``COMMANDS`` and is a thin wrapper over a Python
function of that module (or one it names): the module exposes ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported, so ``t2m eval`` does not pay
for importing torch/transformers unless it needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("t2m.resources", "install offline resources (WordNet for METEOR, Chromium for report tests)"),
    "data": ("t2m.data_cli", "download / verify datasets and print the benchmark split"),
    "eval": ("evaluation.cli", "score a predictions file with the ChEBI-20 metrics (MolT5-exact)"),
    "train": ("t2m.train", "train one shared-encoder T5 on both tasks"),
    "translate": ("t2m.translate_cli", "translate descriptions to SMILES or SMILES to descriptions"),
    "datastore": ("t2m.datastore_cli", "build / inspect a kNN-MT datastore"),
    "tune": ("t2m.tune_cli", "grid-search kNN lambda, k, temperature on the dev slice"),
    "bench": ("t2m.bench", "benchmark the model with and without retrieval, both tasks"),
    "report": ("t2m.report", "rewrite a bench folder's tables and HTML report"),
    "baselines": ("t2m.baselines_cli", "write the no-model retrieval baselines' test predictions"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2m", description=__doc__.splitlines()[0])
    from t2m import __version__

    parser.add_argument("--version", action="version", version=f"t2m {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
