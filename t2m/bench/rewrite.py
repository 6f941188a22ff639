"""``t2m report``: a bench folder's bench.md and report.html rewritten from its bench.json, without decoding
anything (the command line is :mod:`t2m.cli.report`; the renderers are :mod:`t2m.report`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from t2m.bench.config import command_line
from t2m.io import atomic_write_text
from t2m.plots import make_plots
from t2m.report import PLOT_TITLES, bench_markdown, readme_with_bench, write_report


def rewrite_report(bench_dir: Path, replot: bool = False, into: Path | None = None,
                   into_plots: Path | None = None) -> list[Path]:
    """``t2m report``: rewrite a bench folder's bench.md and report.html from its bench.json (``replot``: the
    plots too) and, with ``into``, put bench.md between that markdown page's bench markers (``into_plots``:
    copy the plots there, relative to the page, and link them). Returns report.html, then the page."""
    bench_dir = Path(bench_dir)
    bench = json.loads((bench_dir / "bench.json").read_text(encoding="utf-8"))
    if replot:
        make_plots(bench, bench_dir / "plots")
    names = [name for name in PLOT_TITLES if (bench_dir / "plots" / f"{name}.png").is_file()]
    command = command_line(bench)
    atomic_write_text(bench_dir / "bench.md", bench_markdown(bench, command, names))
    written = [write_report(bench_dir, command)]
    if into is not None:
        plots_dir, plot_names = "plots", []
        if into_plots is not None:
            target = into.parent / into_plots
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy2(bench_dir / "plots" / f"{name}.png", target / f"{name}.png")
            plots_dir, plot_names = into_plots.as_posix(), names
        text = readme_with_bench(into.read_text(encoding="utf-8"), bench_markdown(bench, command, plot_names, plots_dir),
                                 str(into))
        atomic_write_text(into, text)
        written.append(into)
    return written
