"""The bench's tables (``bench.md``) and its one-page, self-contained HTML report (``report.html``).

Both read only the bench's outputs (``bench.json``, ``examples.json``, ``plots/*.png``), so either can be
regenerated without decoding anything::

    t2m report BENCH_DIR                  # rewrites BENCH_DIR/bench.md and BENCH_DIR/report.html
    t2m report BENCH_DIR --into docs/results.md
                                          # also puts bench.md between that page's bench markers

(:func:`t2m.bench.run.rewrite_report` in Python; the command line is :mod:`t2m.cli.report`.) The renderers
take the run's command line as text (:func:`t2m.bench.config.command_line`): this module does not import
the bench, which imports it.

The HTML page needs no network: plots are PNG data URIs, molecules are RDKit drawings (SVG data URIs),
the style sheet is inline, and there is no script.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from t2m.chem import molecule_svg
from t2m.io import atomic_write_text

METRIC_LABELS = {
    "bleu": "BLEU", "exact_match": "Exact", "levenshtein": "Levenshtein↓", "maccs_fts": "MACCS FTS",
    "rdk_fts": "RDK FTS", "morgan_fts": "Morgan FTS", "validity": "Validity", "fcd": "FCD↓",
    "sacrebleu": "sacreBLEU", "bleu2": "BLEU-2", "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L", "meteor": "METEOR",
}
PLOT_TITLES = {"lambda": "Quality against λ (dev slice)", "scaling": "Quality against datastore size",
               "speed": "Quality against decoding speed"}


@dataclass
class Table:
    """A table both renderers print: ``rows`` hold already formatted cells."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def fmt(value: Any, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if metric == "fcd":
        return f"{value:.3f}"
    if metric in ("sacrebleu", "levenshtein"):
        return f"{value:.2f}"
    return f"{value:.4f}"


def fmt_rate(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def fmt_bytes(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value / 2**20:,.1f} MB"


def fmt_seconds(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.1f} s"


def fmt_delta(c: dict[str, Any]) -> str:
    lo, hi = c["ci95"]
    if c.get("delta") is None or lo is None or hi is None:
        return "n/a (undefined for a system)"
    return f"{c['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}]" + (" *" if c.get("excludes_zero") else "")


# ------------------------------------------------------------------------------------------- tables


def data_statement(bench: dict[str, Any]) -> str:
    """One sentence naming the data setting (every results table must say it)."""
    d = bench["data"]
    used = d["test_rows_used"]
    test = f"the first {used:,} of {d['test_rows']:,} test rows" if used < d["test_rows"] else f"all {used:,} test rows"
    src = d.get("sources", {})
    return (f"Data: ChEBI-20, **{d['setting']} setting** — train = {src.get('train', 'train')} ({d['train_rows']:,} pairs; "
            f"the datastores and the retrieval baselines use them), dev = {src.get('dev', 'dev')} ({d['dev_rows']:,} rows; "
            f"kNN tuning), test = {src.get('test', 'test')}, {test}.")


def model_statement(bench: dict[str, Any]) -> str:
    """One sentence naming the model: the shipped one by its package path, any other by the path given."""
    m = bench["model"]
    shipped = Path(m["path"]).parts[-2:] == ("t2m", "default_model")
    name = "the model that ships with t2m (`t2m/default_model`)" if shipped else f"`{m['path']}`"
    return f"Model: {name} ({m['parameters']:,} parameters, fingerprint {m['fingerprint']})."


def smiles_checks(settings: dict[str, Any]) -> str:
    """A system's text2mol checks as the systems table names them: "syntax, valence, rerank", "rerank", ...
    or "–"."""
    checks = [name for name, key in (("syntax", "smiles_syntax"), ("valence", "smiles_valence"),
                                     ("rerank", "valid_smiles_rerank")) if settings.get(key)]
    return ", ".join(checks) or "–"


def systems_table(task: str, t: dict[str, Any]) -> Table:
    metric_keys: list[str] = []
    for system in t["systems"].values():
        metric_keys += [k for k in system["metrics"] if k not in metric_keys]
    headers = ["system", "beams", "SMILES checks", "kNN (k, λ, T)"] + [METRIC_LABELS.get(k, k) for k in metric_keys] + ["mol/s"]
    rows = []
    for name, system in t["systems"].items():
        s = system["settings"]
        knn = s.get("knn")
        rows.append([
            name, str(s.get("num_beams", "–")), smiles_checks(s),
            f"{knn['k']}, {knn['lambda']:g}, {knn['temperature']:.3g}" if knn else "–",
            *[fmt(system["metrics"].get(k), k) for k in metric_keys],
            fmt_rate(system["speed"].get("molecules_per_s")),
        ])
    head = f"beam {t['headline_beam']}" if t["headline_beam"] > 1 else "greedy"
    notes = [f"{t['rows']:,} test rows; {head} decoding is the headline (bare names, other beams @greedy / @beam<N>); "
             "SMILES checks (text2mol): syntax = decoding kept to syntactically possible SMILES (balanced branches, "
             "ring bonds, brackets), rerank = the best-scoring beam RDKit parses is chosen; "
             "retrieval = the baseline with no model."]
    return Table(f"{task}: all systems on the test split", headers, rows, notes)


def comparisons_table(task: str, t: dict[str, Any]) -> Table:
    headers = ["system", "minus", "metric", "difference [95% CI]", "share of resamples not better"]
    rows = [[c["system"], c["baseline"], METRIC_LABELS.get(c["metric"], c["metric"]), fmt_delta(c),
             fmt(c.get("p_not_better"))] for c in t["comparisons"]]
    samples = t["comparisons"][0]["samples"] if t["comparisons"] else 0
    return Table(f"{task}: paired bootstrap differences", headers, rows,
                 [f"{samples:,} paired resamples of the test rows; BLEU recomputed from resampled n-gram statistics "
                  "(sacrebleu's paired bootstrap); * = the 95% interval excludes zero."])


def cost_table(bench: dict[str, Any]) -> Table:
    headers = ["task", "beams", "model mol/s", "model+kNN mol/s", "model tok/s", "model+kNN tok/s", "kNN time ×"]
    rows = []
    for task, t in bench["tasks"].items():
        for s in t["cost"]["decoding"]:
            rows.append([task, str(s["beam"]), fmt_rate(s["model_molecules_per_s"]), fmt_rate(s["knn_molecules_per_s"]),
                         fmt_rate(s["model_tokens_per_s"]), fmt_rate(s["knn_tokens_per_s"]),
                         "n/a" if s["knn_time_ratio"] is None else f"{s['knn_time_ratio']:.2f}"])
    m = bench["machine"]
    workers = m.get("decode_workers")
    if workers:
        where = (f"each decoding split over {workers['processes']} worker processes at once "
                 f"({m['cpu_affinity'] or m['cpus']} usable CPU cores, {workers['threads_each']} torch thread(s) each); "
                 "each worker takes the next chunk of rows when free")
    else:
        where = f"in one process ({m['cpu_affinity'] or m['cpus']} usable CPU cores, {m['torch_threads']} torch threads)"
    return Table("Decoding speed with and without retrieval", headers, rows,
                 [f"Wall clock on this machine, {where}; tokens = tokens of the chosen outputs (model tokenizer, "
                  "with EOS)."])


def datastore_table(bench: dict[str, Any]) -> Table:
    headers = ["task", "entries", "on disk", "bytes/entry", "index", "index file", "build time", "tuned k, λ, T",
               "tuned on", "build peak RSS", "bench peak RSS"]
    rows = []
    for task, t in bench["tasks"].items():
        d = t["datastore"]
        knn = d["knn"]
        build = d["build_seconds"] if d["build_seconds"] is not None else d["build_seconds_recorded"]
        rows.append([task, fmt(d["entries"]), fmt_bytes(d["bytes_on_disk"]), f"{d['bytes_per_entry']:,.0f}",
                     _index_name(d["index"]), fmt_bytes(d["index"].get("bytes")),
                     fmt_seconds(build) + ("" if d["built_here"] else " (recorded)"),
                     f"{knn['k']}, {knn['lambda']:g}, {knn['temperature']:.3g}",
                     knn.get("source", "default").split(",")[0],
                     "n/a" if d.get("build_peak_rss_mb") is None else f"{d['build_peak_rss_mb']:,.0f} MB",
                     f"{t['cost']['peak_rss_mb']:,.0f} MB"])
    return Table("Datastores", headers, rows, [
        "index file: the FAISS index alone (what decoding holds in memory besides the model); build peak RSS: "
        "peak resident memory of the process that built and tuned the task's stores (n/a: built earlier); bench peak "
        "RSS: the bench process (decoding with the stores, scoring) up to the end of the task."])


def _index_name(index: dict[str, Any]) -> str:
    params = ", ".join(f"{k} {index[k]}" for k in ("nprobe", "efSearch") if index.get(k) is not None)
    return f"{index.get('factory')}" + (f" ({params})" if params else "")


def scaling_table(bench: dict[str, Any]) -> Table:
    headers = ["task", "pairs in store", "entries", "on disk", "metric", "model + kNN", "gain over model [95% CI]", "mol/s"]
    rows = []
    for task, t in bench["tasks"].items():
        for p in t["scaling"]["points"]:
            for metric in t["headline_metrics"][:2]:
                g = p["gain_over_model"][metric]
                rows.append([task, f"{p['fraction']:.0%} ({fmt(p['rows'])})", fmt(p["entries"]), fmt_bytes(p["bytes_on_disk"]),
                             METRIC_LABELS.get(metric, metric), fmt(p["metrics"].get(metric), metric),
                             fmt_delta({**g, "ci95": g["ci95"]}), fmt_rate(p["speed"].get("molecules_per_s"))])
    beams = {t["scaling"]["beam"] for t in bench["tasks"].values()}
    rows_used = sorted({t["scaling"].get("rows") or t["rows"] for t in bench["tasks"].values()})
    return Table("Datastore size", headers, rows,
                 [f"beam {', '.join(map(str, sorted(beams)))}, the first {'/'.join(f'{n:,}' for n in rows_used)} test "
                  "rows (gains against the model alone on the same rows); λ, k, T tuned on the full store and kept for "
                  "the smaller stores, whose entries are cut from the full store's."])


def editing_table(task: str, t: dict[str, Any]) -> Table:
    """Per system: how its outputs edit the pair the ranked retrieval answers with (t2m.editing)."""
    editing = t["editing"]
    bands = editing["rows_by_band"]
    headers = ["system", "copied share", "identical to the pair", "changed where the truth changed",
               "kept where the truth kept"] + [f"exact, similarity {band} ({n:,} rows)" for band, n in bands.items()]
    rows = [[name, fmt(e["copied_share"]), fmt(e["identical_to_neighbour"]), fmt(e["changed_where_gold_changed"]),
             fmt(e["kept_where_gold_kept"]), *[fmt(e["exact_by_band"][band]) for band in bands]]
            for name, e in editing["systems"].items()]
    unit = "SMILES tokens, 8-grams" if task == "text2mol" else "words, 4-grams"
    return Table(f"{task}: editing the neighbour", headers, rows, [
        f"The pair: the one `{editing['neighbour']}` answers with (what the T5 reads). Copied share: of the output's "
        f"n-grams ({unit}), those in the pair's target (the references: {fmt(editing['reference_copied_share'])}). "
        "Changed / kept: over the rows whose truth differs from the pair's target, of the pair's tokens the truth "
        "changes, the share the output changes, and of those it keeps, the share the output keeps. Exact by the "
        "Morgan Tanimoto of the pair's molecule to the test molecule."])


def summary_tables(bench: dict[str, Any]) -> list[Table]:
    tables = []
    for task, t in bench["tasks"].items():
        tables.append(systems_table(task, t))
        tables.append(comparisons_table(task, t))
        if t.get("editing"):
            tables.append(editing_table(task, t))
    tables.append(cost_table(bench))
    if all(t.get("datastore") for t in bench["tasks"].values()):  # absent from a --no-knn bench
        tables += [datastore_table(bench), scaling_table(bench)]
    return tables


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(map(_md_cell, table.headers)) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.headers))) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"_{n}_" for n in table.notes]
    return "\n".join(lines)


def bench_markdown(bench: dict[str, Any], command: str, plot_names: Sequence[str] = (), plots_dir: str = "plots") -> str:
    """``bench.md``: the data setting, the verdict and every summary table, ready for docs/results.md;
    ``command``: the run's command line (:func:`t2m.bench.config.command_line`); ``plot_names`` (e.g.
    ``lambda``) are linked as ``plots_dir/<name>.png``."""
    lines = ["## Benchmark: does retrieval help?", "", data_statement(bench), "", model_statement(bench), "",
             f"Generated by `{command}` on {bench['created']} in {bench.get('seconds', 'n/a')} s.", ""]
    if bench.get("verdict"):
        lines += ["**Verdict**", ""] + [f"- {v}" for v in bench["verdict"]] + [""]
    for table in summary_tables(bench):
        lines += [table_markdown(table), ""]
    lines += [f"_Note: {n}_  " for n in bench.get("notes", [])]
    for task, s in bench["signature"].items():
        if s:
            sig_text = "|".join(f"{k}:{v}" for k, v in s.items() if v is not None and k != "sacrebleu")
            lines.append(f"Evaluation signature ({task}): `{sig_text}`  ")
    if plot_names:
        lines += ["", " ".join(f"![{PLOT_TITLES.get(name, name)}]({plots_dir}/{name}.png)" for name in plot_names)]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------- html

CSS = """
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;font-size:14px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{color:#666;font-size:12px}.verdict li{margin:3px 0}
.plots img{max-width:100%;border:1px solid #eee;margin:6px 0}
.example{border:1px solid #ddd;border-radius:6px;padding:10px;margin:10px 0}
.mols{display:flex;flex-wrap:wrap;gap:10px}.mol{width:230px;font-size:12px}
.mol img{width:220px;height:160px;border:1px solid #eee;background:#fff}
.smiles{font-family:'DejaVu Sans Mono',monospace;font-size:11px;word-break:break-all;color:#444}
.bad{color:#b00}.good{color:#070}.src{margin:4px 0 8px}
.noimg{width:220px;height:160px;border:1px dashed #bbb;display:flex;align-items:center;justify-content:center;color:#b00}
.captions td{text-align:left;vertical-align:top}.ctx{font-family:'DejaVu Sans Mono',monospace;font-size:11px}
"""


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def molecule_img(smiles: str, alt: str) -> str:
    svg = molecule_svg(smiles)
    if svg is None:
        return '<div class="noimg">not a valid molecule</div>'
    return f'<img alt="{e(alt)}" src="{data_uri(svg.encode("utf-8"), "image/svg+xml")}">'


def table_html(table: Table) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in table.notes)
    return f"<h3>{e(table.title)}</h3><table><tr>{head}</tr>{body}</table>{notes}"


def _markdown_bold(text: str) -> str:
    escaped = e(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _text2mol_example(row: dict[str, Any]) -> str:
    cards = [f'<div class="mol"><b>reference</b> (CID {e(row.get("cid"))}){molecule_img(row["reference"], "reference")}'
             f'<div class="smiles">{e(row["reference"])}</div></div>']
    for name, s in row["systems"].items():
        if not s["text"].strip():
            status = '<span class="bad">empty output</span> (valid by MolT5\'s rule)'
        elif s.get("exact"):
            status = '<span class="good">exact match</span>'
        else:
            status = '<span class="good">valid</span>' if s.get("valid") else '<span class="bad">invalid</span>'
        tanimoto = "" if s.get("tanimoto") is None or not s["text"].strip() else f" · Tanimoto {s['tanimoto']:.3f}"
        extra = f" · from training CID {e(s['retrieved_cid'])}" if s.get("retrieved_cid") else ""
        image = molecule_img(s["text"], name) if s["text"].strip() else '<div class="noimg">empty output</div>'
        cards.append(f'<div class="mol"><b>{e(name)}</b>{image}'
                     f'<div>{status}{tanimoto}{extra}</div><div class="smiles">{e(s["text"])}</div></div>')
    return (f'<div class="example"><div class="src"><b>Row {row["row"] + 1}</b> — {e(row["source"])}</div>'
            f'<div class="mols">{"".join(cards)}</div>{_trace_html(row.get("retrieval_trace"))}</div>')


def _mol2text_example(row: dict[str, Any]) -> str:
    rows = [f'<tr><td><b>reference</b></td><td>{e(row["reference"])}</td><td></td><td></td></tr>']
    for name, s in row["systems"].items():
        extra = f" (from training CID {e(s['retrieved_cid'])})" if s.get("retrieved_cid") else ""
        caption = e(s["text"]) if s["text"].strip() else '<span class="bad">(empty output)</span>'
        rows.append(f'<tr><td><b>{e(name)}</b>{extra}</td><td>{caption}</td><td>{fmt(s.get("bleu4"))}</td>'
                    f'<td>{fmt(s.get("meteor"))}</td></tr>')
    return (f'<div class="example"><div class="mols"><div class="mol"><b>input</b> (CID {e(row.get("cid"))})'
            f'{molecule_img(row["source"], "input molecule")}<div class="smiles">{e(row["source"])}</div></div>'
            f'<div style="flex:1"><table class="captions"><tr><th>system</th><th>caption</th><th>BLEU-4 (row)</th>'
            f'<th>METEOR</th></tr>{"".join(rows)}</table></div></div>{_trace_html(row.get("retrieval_trace"))}</div>')


def _trace_html(trace: dict[str, Any] | None) -> str:
    if not trace or not trace.get("tokens"):
        return ""
    rows = []
    for t in trace["tokens"]:
        near = "<br>".join(
            f'CID {e(n.get("cid") or "?")} (train row {n["row"] + 1}, pos {n["position"]}): token {e(n["token"])}, '
            f'd={n["distance"]:.3g} <span class="ctx">{e(n.get("context", ""))}</span>' for n in t["neighbours"])
        rows.append(f'<tr><td>{t["step"]}</td><td class="ctx">{e(t["token"])}</td><td>{t["p_model"]:.3f} → '
                    f'{t["p_mixed"]:.3f}</td><td style="text-align:left">{near}</td></tr>')
    return (f'<p class="note">Retrieved neighbours behind the tokens retrieval moved most ({e(trace["decoding"])}; '
            f'output: <span class="smiles">{e(trace["greedy_output"])}</span>)</p>'
            f'<table><tr><th>step</th><th>token</th><th>p(model) → p(model+kNN)</th><th>nearest training entries</th></tr>'
            f'{"".join(rows)}</table>')


def render_html(bench: dict[str, Any], examples: dict[str, Any] | None, plots: dict[str, Path], command: str) -> str:
    """The report page as one string (no external resources); ``command`` as in :func:`bench_markdown`."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>t2m bench report</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>t2m bench: does retrieval help, in which direction, at what cost?</h1>",
             f"<p>{_markdown_bold(data_statement(bench))}</p><p>{_markdown_bold(model_statement(bench))}</p>",
             f'<p class="note">Generated by <code>{e(command)}</code> on {e(bench["created"])} '
             f'in {e(bench.get("seconds", "n/a"))} s, peak memory {e(bench.get("peak_rss_mb", "n/a"))} MB.</p>']
    if bench.get("verdict"):
        parts.append('<h2>Verdict</h2><ul class="verdict">' + "".join(f"<li>{e(v)}</li>" for v in bench["verdict"]) + "</ul>")
    parts.append("<h2>Summary</h2>")
    parts += [table_html(t) for t in summary_tables(bench)]
    parts += [f'<p class="note">Note: {e(n)}</p>' for n in bench.get("notes", [])]
    for task, s in bench["signature"].items():
        if s:
            parts.append(f'<p class="note">Evaluation signature ({e(task)}): <code>'
                         f'{e("|".join(f"{k}:{v}" for k, v in s.items() if v is not None))}</code></p>')
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for name, path in plots.items():
            parts.append(f'<h3>{e(PLOT_TITLES.get(name, name))}</h3>'
                         f'<img alt="{e(name)} plot" src="{data_uri(Path(path).read_bytes(), "image/png")}">')
        parts.append("</div>")
    if examples:
        parts.append("<h2>Examples</h2>")
        for task, ex in examples.get("tasks", {}).items():
            render = _text2mol_example if task == "text2mol" else _mol2text_example
            for group in ex.get("groups", []):
                if not group["rows"]:
                    continue
                parts.append(f"<h3>{e(task)}: {e(group['title'])} (by {e(METRIC_LABELS.get(ex['primary_metric'], ex['primary_metric']))})</h3>")
                parts += [render(row) for row in group["rows"]]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out: Path, command: str) -> Path:
    """Render ``out/report.html`` from ``out/bench.json``, ``out/examples.json`` and ``out/plots/*.png``
    (``command`` as in :func:`bench_markdown`)."""
    out = Path(out)
    bench = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    examples_file = out / "examples.json"
    examples = json.loads(examples_file.read_text(encoding="utf-8")) if examples_file.is_file() else None
    plots = {name: out / "plots" / f"{name}.png" for name in PLOT_TITLES if (out / "plots" / f"{name}.png").is_file()}
    path = out / "report.html"
    atomic_write_text(path, render_html(bench, examples, plots, command))
    return path


# ------------------------------------------------------------------------------------ browser check

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")
_CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var out = document.createElement('pre');
  out.id = 't2m-image-check';
  out.textContent = JSON.stringify({images: images.length, loaded: images.length - broken.length,
    broken: broken.map(function (i) { return i.alt || i.src.slice(0, 40); }),
    widths: images.map(function (i) { return i.naturalWidth; }), title: document.title});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH (Debian's ``chromium``, installed by ``t2m setup --with-chromium``), or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_check(page: str | Path, chromium: str | None = None, screenshot: str | Path | None = None,
                  timeout: float = 120.0) -> dict[str, Any]:
    """Open ``page`` in headless Chromium and report how its images loaded:
    ``{"images", "loaded", "broken": [alt...], "widths": [naturalWidth...], "title"}``. A copy of the page with
    a small script added is what Chromium opens (the report itself has no script). ``screenshot``: also
    save a PNG of the rendered page there. Raises FileNotFoundError without Chromium, RuntimeError when
    Chromium fails or the page never finishes loading."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium on PATH: install it with `t2m setup --with-chromium` (Debian's chromium)")
    text = Path(page).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="t2m-chromium-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(text.replace("</body>", _CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}"]
        done = subprocess.run([*base, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
                              capture_output=True, text=True, timeout=timeout)
        match = re.search(r'<pre id="t2m-image-check">(.*?)</pre>', done.stdout, re.S)
        if match is None:
            raise RuntimeError(f"{page}: Chromium did not finish loading the page (exit {done.returncode}): "
                               f"{done.stderr.strip()[-800:]}")
        result = json.loads(html.unescape(match.group(1)))
        if screenshot is not None:
            shot = subprocess.run([*base, "--window-size=1280,2400", f"--screenshot={Path(screenshot).resolve()}",
                                   Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
            if shot.returncode != 0 or not Path(screenshot).is_file():
                raise RuntimeError(f"{page}: Chromium screenshot failed (exit {shot.returncode}): {shot.stderr.strip()[-800:]}")
    return result


README_BEGIN = "<!-- bench.md begins: generated by t2m report BENCH_DIR --into docs/results.md -->"
README_END = "<!-- bench.md ends -->"


def readme_with_bench(readme: str, bench_md: str, readme_path: str = "docs/results.md") -> str:
    """``readme`` (a markdown page such as docs/results.md) with the text between its bench markers replaced
    by ``bench_md``, headings one level down (bench.md's own title dropped: the page's section heading
    stands above the markers)."""
    if README_BEGIN not in readme or README_END not in readme:
        raise ValueError(f"{readme_path}: no bench markers; put the lines {README_BEGIN!r} and {README_END!r} "
                         "where the results go")
    lines = bench_md.splitlines()
    if lines and lines[0].startswith("## "):
        lines = lines[1:]
    body = "\n".join("#" + line if line.startswith("##") else line for line in lines).strip()
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n\n{body}\n\n{README_END}{tail}"
