"""The bench's plots (PNG, matplotlib's Agg backend: no display needed).

- ``lambda.png``: quality against λ per task on the dev slice, at the tuned k and T — the decoded task
  metric (left axis) and the teacher-forced log-likelihood of the references (right axis);
- ``scaling.png``: quality against datastore size (25/50/100% of the training pairs), with the model
  alone and the retrieval baseline as horizontal lines;
- ``speed.png``: quality against decoding speed (molecules/s, log scale) for every system.

Each function takes the ``bench.json`` dict and returns the path it wrote, or None when the bench holds
nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRIC_LABELS = {"bleu4": "BLEU-4", "bleu2": "BLEU-2", "meteor": "METEOR", "exact_match": "exact match",
                 "morgan_fts": "Morgan FTS", "validity": "validity"}
PRIMARY = {"mol2text": "bleu4", "text2mol": "exact_match"}
SECONDARY = {"mol2text": "meteor", "text2mol": "morgan_fts"}
COLORS = {"model": "#4c72b0", "model+knn": "#dd8452", "retrieval": "#55a868"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_lambda(bench: dict[str, Any], out: Path) -> Path | None:
    """Dev-slice quality against λ for each task (decoded metric and teacher-forced log-likelihood)."""
    tasks = [(t, d["lambda_sweep"]) for t, d in bench["tasks"].items() if (d.get("lambda_sweep") or {}).get("points")]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.0 * len(tasks), 4.4), squeeze=False, layout="constrained")
    for ax, (task, sweep) in zip(axes[0], tasks):
        points = sweep["points"]
        lambdas = [p["lambda"] for p in points]
        handles = []
        for metric, style in ((PRIMARY[task], "o-"), (SECONDARY[task], "s--")):
            values = [(p.get("metric") or {}).get(metric) for p in points]
            if any(v is not None for v in values):
                xs = [x for x, v in zip(lambdas, values) if v is not None]
                ys = [v for v in values if v is not None]
                handles += ax.plot(xs, ys, style, label=f"{METRIC_LABELS.get(metric, metric)} "
                                                        f"({sweep['decoded_rows']} dev rows, greedy)")
        ax.set_xlabel("λ (weight of the kNN distribution)")
        ax.set_ylabel("dev metric")
        twin = ax.twinx()
        handles += twin.plot(lambdas, [p["dev_log_likelihood"] for p in points], ":", color="grey",
                             label=f"log-likelihood / token ({sweep['dev_rows']} dev rows)")
        twin.set_ylabel("teacher-forced log-likelihood")
        handles.append(ax.axvline(sweep["tuned_lambda"], color="black", lw=0.8, label=f"tuned λ = {sweep['tuned_lambda']:g}"))
        ax.set_title(f"{task}: quality vs λ (k={sweep['k']}, T={sweep['temperature']:.3g})", fontsize=10)
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return _save(fig, out / "lambda.png")


def plot_scaling(bench: dict[str, Any], out: Path) -> Path | None:
    """Headline metric against datastore entries for each task; model-alone and retrieval as lines."""
    tasks = [(t, d) for t, d in bench["tasks"].items() if (d.get("scaling") or {}).get("points")]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.6), squeeze=False, layout="constrained")
    for ax, (task, d) in zip(axes[0], tasks):
        points = d["scaling"]["points"]
        xs = [p["entries"] for p in points]
        beam = d["scaling"]["beam"]
        head = d.get("headline_beam", beam)
        model_name = "model" if beam == head else f"model@{'greedy' if beam == 1 else f'beam{beam}'}"
        for metric, marker in ((PRIMARY[task], "o-"), (SECONDARY[task], "s-")):
            label = METRIC_LABELS.get(metric, metric)
            ys = [p["metrics"].get(metric) for p in points]
            ax.plot(xs, ys, marker, color=COLORS["model+knn"], label=f"model + kNN: {label}",
                    alpha=1.0 if metric == PRIMARY[task] else 0.6)
            for x, y, p in zip(xs, ys, points):
                if y is not None and metric == PRIMARY[task]:
                    ax.annotate(f"{p['fraction']:.0%}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            for name, style in ((model_name, "--"), ("retrieval", ":")):
                on_rows = d["scaling"].get("baselines", {}).get(name)  # on the scaling runs' rows
                value = (on_rows if on_rows is not None else d["systems"].get(name, {}).get("metrics", {})).get(metric)
                if value is not None:
                    ax.axhline(value, ls=style, color=COLORS.get(name.split("@")[0], "grey"),
                               alpha=1.0 if metric == PRIMARY[task] else 0.6, label=f"{name}: {label}")
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x >= 1000 else f"{x:g}"))
        ax.set_xlabel("datastore entries (target tokens)")
        ax.set_ylabel("test metric")
        ax.set_title(f"{task}: quality vs datastore size (beam {beam})", fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return _save(fig, out / "scaling.png")


def plot_speed_quality(bench: dict[str, Any], out: Path) -> Path | None:
    """Headline metric against molecules/s for every system of each task."""
    tasks = list(bench["tasks"].items())
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.0), squeeze=False, layout="constrained")
    for ax, (task, d) in zip(axes[0], tasks):
        metric = PRIMARY[task]
        for name, system in d["systems"].items():
            speed = system.get("speed", {}).get("molecules_per_s")
            value = system.get("metrics", {}).get(metric)
            if not speed or value is None:
                continue
            family = "model+knn" if name.startswith("model+knn") else name.split("@")[0].split("/")[0]
            ax.scatter([speed], [value], color=COLORS.get(family, "grey"), s=30, zorder=3)
            ax.annotate(name, (speed, value), textcoords="offset points", rotation=30, xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("molecules / s (log scale, this machine)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"{task}: quality vs speed", fontsize=10)
        ax.grid(alpha=0.3)
    return _save(fig, out / "speed.png")


def make_plots(bench: dict[str, Any], out: Path) -> dict[str, Path]:
    """All plots into ``out``; returns {name: path} of those drawn."""
    out = Path(out)
    drawn = {}
    for name, function in (("lambda", plot_lambda), ("scaling", plot_scaling), ("speed", plot_speed_quality)):
        path = function(bench, out)
        if path is not None:
            drawn[name] = path
    _pyplot().close("all")
    return drawn
