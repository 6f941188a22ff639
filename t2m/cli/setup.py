"""``t2m setup``: a thin wrapper over :func:`t2m.resources.setup` (WordNet for METEOR, the METEOR table,
optionally Chromium for the report test).

    t2m setup [--nltk-data DIR] [--no-apt] [--with-chromium] [--no-meteor-table]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from t2m.cli.checks import with_flags
from t2m.resources import SetupError, setup

# the fields of t2m.resources.setup the parser stores under other names (t2m.cli.checks.flag_names)
FIELD_FLAGS = {"use_apt=False": "--no-apt"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nltk-data",
        type=Path,
        default=None,
        help="nltk data directory to lay WordNet out in (default: $T2M_NLTK_DATA or ~/.cache/t2m/nltk_data)",
    )
    parser.add_argument(
        "--no-apt", action="store_true", help="do not run apt-get; only lay out an existing /usr/share/wordnet"
    )
    parser.add_argument(
        "--with-chromium", action="store_true", help="also install Chromium and fonts (HTML report tests)"
    )
    parser.add_argument("--no-meteor-table", action="store_true", help="do not pre-build the METEOR table for SciBERT")


def run(args: argparse.Namespace) -> int:
    try:
        if args.nltk_data is not None:
            os.environ["T2M_NLTK_DATA"] = str(args.nltk_data)  # so that evaluation finds what we lay out
        setup(
            args.nltk_data,
            use_apt=not args.no_apt,
            with_chromium=args.with_chromium,
            meteor_table=not args.no_meteor_table,
        )
    except (SetupError, subprocess.CalledProcessError) as e:
        print(f"t2m setup: error: {with_flags(str(e), args.flag_names)}", file=sys.stderr)
        return 1
    return 0
