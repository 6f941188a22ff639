"""The t2m command line: translate between molecule descriptions and SMILES, score, train, retrieve.

One module per subcommand in this package (``t2m/cli/<command>.py``), each a thin wrapper over one
function or class a user can import and call with the same arguments: the module exposes
``add_arguments(parser)`` and ``run(args) -> int`` (which checks the options before any model loads), and
optionally ``FIELD_FLAGS``, the flags of fields the core names otherwise than the parser
(:func:`t2m.cli.checks.flag_names`). Only the chosen subcommand's module is imported, so ``t2m eval`` does
not pay for importing torch/transformers unless it needs them. No module outside this package sees
``argparse`` or a flag: the core names options by their fields (:mod:`t2m.errors`).

Errors are one line on stderr, ``t2m COMMAND: error: WHAT; FIX``, with the options the core names by field
written as the command's flags (:func:`t2m.cli.checks.with_flags`); exit status 2 for a usage error (an
option or a path the command cannot use, found before any work starts and before any model loads:
:class:`t2m.cli.checks.UsageError`, :class:`t2m.errors.OptionError`) and 1 for a failure while working;
Ctrl-C exits 130 with one line. The Python traceback is shown only with ``--debug`` (anywhere on the
command line) or ``T2M_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Mapping

from t2m import __version__
from t2m.cli.checks import UsageError, flag_names, with_flags
from t2m.errors import OptionError, error_line

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("t2m.cli.setup", "install offline resources (WordNet for METEOR, Chromium for report tests)"),
    "data": ("t2m.cli.data", "download / verify datasets and print the benchmark split"),
    "eval": ("t2m.cli.eval", "score a predictions file with the ChEBI-20 metrics (MolT5-exact)"),
    "train": ("t2m.cli.train", "train one shared-encoder T5 on both tasks"),
    "translate": ("t2m.cli.translate", "translate descriptions to SMILES or SMILES to descriptions"),
    "datastore": ("t2m.cli.datastore", "build / inspect a kNN-MT datastore"),
    "tune": ("t2m.cli.tune", "grid-search kNN lambda, k, temperature on the dev slice"),
    "bench": ("t2m.cli.bench", "benchmark the model with and without retrieval, both tasks"),
    "report": ("t2m.cli.report", "rewrite a bench folder's tables and HTML report"),
    "baselines": ("t2m.cli.baselines", "write the no-model retrieval baselines' test predictions"),
    "ranker": ("t2m.cli.ranker", "fit the learned choice among each input's nearest database pairs"),
    "ship": ("t2m.cli.ship", "make a trained checkpoint t2m's default model, with a model card scored on test"),
    "serve": ("t2m.cli.serve", "a local web page (and JSON API) translating both ways, with drawings"),
}

DEBUG_FLAG = "--debug"
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text.lower() or not shows_default(action):
            return help_text
        return f"{help_text} (default: %(default)s)" if help_text else "(default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    """Whether ``action`` (an option) has a default worth showing: not None, False (an unset flag) or
    suppressed -- a default of 0 is one."""
    return bool(action.option_strings) and not any(action.default is none for none in (None, False, argparse.SUPPRESS))


def _polish(parser: argparse.ArgumentParser, path: str, aliases: Mapping[str, str]) -> None:
    """Give ``parser`` (subcommand ``path``) and its sub-parsers the formatter, each sub-parser without a
    description its help as one, and each its flags by field (``args.flag_names``; ``aliases``: the command
    module's ``FIELD_FLAGS``)."""
    parser.formatter_class = HelpFormatter
    parser.set_defaults(flag_names=flag_names(parser, aliases))
    for action in parser._actions:
        if action.option_strings and action.metavar is None and action.dest.endswith("_") and action.nargs != 0:
            action.metavar = action.dest.rstrip("_").upper()  # a dest such as lambda_: LAMBDA, not LAMBDA_
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    sub.description = helps[name]
                _polish(sub, f"{path} {name}", aliases)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2m", description=__doc__.splitlines()[0], formatter_class=HelpFormatter,
                                     epilog="Errors print one line; add --debug (or set T2M_DEBUG=1) to see the "
                                            "Python traceback.")

    parser.add_argument("--version", action="version", version=f"t2m {__version__}")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the Python traceback of an error (also T2M_DEBUG=1); may go anywhere")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(func=module.run)
            _polish(p, name, getattr(module, "FIELD_FLAGS", {}))
    return parser


def debug_enabled() -> bool:
    return os.environ.get("T2M_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


# exceptions whose message is written for the user: shown alone; others get their type and the --debug hint
_MESSAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, LookupError)


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UsageError, *_MESSAGE_ERRORS]
    for module, name in (("datastore.store", "DatastoreError"), ("t2m.data", "DataFormatError")):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, name):
            errors.append(getattr(loaded, name))
    return tuple(errors)


def report_error(command: str | None, error: BaseException, flags: Mapping[str, str] | None = None) -> int:
    """Print ``error`` as one line, the options it names by field written as the command's ``flags``, and
    return its exit status."""
    prefix = f"t2m {command}" if command else "t2m"
    if isinstance(error, KeyboardInterrupt):
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    message = with_flags(error_line(error), flags or {})
    if not isinstance(error, _user_errors()):
        message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return EXIT_USAGE if isinstance(error, (UsageError, OptionError)) else EXIT_FAILURE


def command_name(args: argparse.Namespace) -> str:
    """The subcommand ``args`` ran, with its action when it has them: ``datastore inspect``, ``data info``."""
    action = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {action}" if action else args.command


def _run(args: argparse.Namespace) -> int:
    """Run ``args.command`` (its ``run`` checks its options first); its exit status."""
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled()
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        debug = True
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    args.debug = debug
    if debug:
        return _run(args)
    try:
        return _run(args)
    except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - the one place errors become one line
        return report_error(command_name(args), error, getattr(args, "flag_names", {}))
