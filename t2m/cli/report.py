"""``t2m report``: a thin wrapper over :func:`t2m.bench.rewrite.rewrite_report` (a bench folder's bench.md and
report.html rewritten from its bench.json, and optionally a markdown page's bench tables).

    t2m report BENCH_DIR [--replot] [--into docs/results.md [--into-plots DIR]]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2m.bench.rewrite import rewrite_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bench_dir", type=Path, help="a t2m bench --out folder")
    parser.add_argument("--replot", action="store_true", help="draw the plots again from bench.json")
    parser.add_argument("--into", "--readme", dest="readme", metavar="PAGE", type=Path, default=None,
                        help="also write bench.md between this markdown page's bench markers (docs/results.md)")
    parser.add_argument("--into-plots", "--readme-plots", dest="readme_plots", metavar="DIR", type=Path, default=None,
                        help="copy the plots here (relative to that page) and link them from it")


def run(args: argparse.Namespace) -> int:
    for path in rewrite_report(args.bench_dir, args.replot, args.readme, args.readme_plots):
        print(path)
    return 0
