"""``t2m data``: download / verify a dataset, and print the ChEBI-20 split of a setting.

    t2m data download chebi20 [--from DIR] [--to DIR] [--force]
    t2m data info [--data DIR] [--setting auto|benchmark|official]
    t2m data split [...]       (the same command as ``info``, with its own help)

Thin wrappers over :mod:`t2m.download` and :mod:`t2m.data`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2m import data, download
from t2m.cli.checks import with_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    fetch = actions.add_parser(
        "download", help="download (or copy with --from) a dataset's split files, verified by git blob id",
        description="Download a dataset's split files from the URLs in its manifest, or copy them from a local "
        "directory, verifying each by git blob id; a mismatching file is refused.",
    )
    fetch.add_argument("dataset", help="manifest name in data/ (e.g. chebi20) or path to a manifest .json")
    fetch.add_argument("--from", dest="from_dir", type=Path, help="copy the files from this directory instead of downloading")
    fetch.add_argument("--to", dest="to_dir", type=Path, help="where the files go (default: data/downloads/<dataset>)")
    fetch.add_argument("--force", action="store_true", help="fetch again even when a verified copy is present")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per download (default: 60)")
    fetch.set_defaults(data_func=run_download)

    texts = {
        "info": ("print the ChEBI-20 directory, file checks and the split sizes of a setting",
                 "Print which ChEBI-20 directory is used, whether each file matches its manifest (git blob id), "
                 "and the train/dev/test sizes of the setting."),
        "split": ("print how a setting splits ChEBI-20 into train/dev/test (same output as info)",
                  "Print the train/dev/test split of a ChEBI-20 setting: which file (or which slice of "
                  "validation.txt) each split comes from and its size. The same command as `t2m data info`, "
                  "named for the question it answers."),
    }
    for name, (help_text, description) in texts.items():
        info = actions.add_parser(name, help=help_text, description=description)
        info.add_argument("--data", type=Path, help="ChEBI-20 directory (default: $T2M_SHARED_DATA/chebi20, "
                          "../shared/data/chebi20, data/downloads/chebi20 — the first that exists)")
        info.add_argument("--setting", choices=data.SETTINGS, default="auto",
                          help="official (train.txt) or benchmark (validation minus a dev slice); auto: official "
                          "when train.txt is present")
        info.add_argument("--dev-size", type=int, default=data.DEV_SIZE, help="rows of validation.txt held out as the dev slice (default: 300)")
        info.set_defaults(data_func=run_info)


def run_download(args: argparse.Namespace) -> int:
    """Exit 0 when every required split is in place, verified; 1 when one is missing or any file is refused."""
    try:
        results = download.fetch_dataset(args.dataset, args.to_dir, args.from_dir, force=args.force, timeout=args.timeout)
    except (FileNotFoundError, ValueError) as err:
        print(f"t2m data: error: {with_flags(str(err), args.flag_names)}", file=sys.stderr)
        return 1
    failed = False
    for result in results:
        note = "" if result.required or result.ok else " (optional)"
        print(f"  {result.split:24} {result.status:10} {with_flags(result.message, args.flag_names)}{note}")
        failed |= result.status == download.REFUSED or (result.required and not result.ok)
    return 1 if failed else 0


def run_info(args: argparse.Namespace) -> int:
    try:
        directory = data.resolve_chebi20_dir(args.data)
        splits = data.load_chebi20_records(directory, args.setting, dev_size=args.dev_size)
    except (FileNotFoundError, ValueError) as err:
        print(f"t2m data: error: {err}", file=sys.stderr)
        return 1
    print(f"ChEBI-20 directory: {directory}")
    for result in download.check_dataset("chebi20", directory):
        if result.ok:
            print(f"  {result.file:28} verified")
        elif result.status == download.MISSING and not result.required:
            print(f"  {result.file:28} missing (optional{', ' + result.url if result.url else ''})")
        else:
            print(f"  {result.file:28} {result.status}: {result.message}")
    print(f"setting: {splits.setting}")
    for split, size in splits.sizes().items():
        print(f"  {split:5} {size:6d}  {splits.sources[split]}")
    if splits.setting != data.OFFICIAL:
        print(f"  not the official setting: its numbers do not compare with published ChEBI-20 results"
              f"{'; train.txt is missing here (t2m data download chebi20)' if args.setting == 'auto' else ''}")
    print("files read (sha256):")
    for name, digest in splits.files.items():
        print(f"  {name:28} {digest}")
    return 0


def run(args: argparse.Namespace) -> int:
    return args.data_func(args)
