"""What the numbers say: plain verdicts from the paired-bootstrap comparisons, and the cost of retrieval."""

from __future__ import annotations

from typing import Any, Sequence

from t2m.bench.config import DEFAULT_CHOICE_METRICS, HEADLINE_METRICS, PRIMARY_METRIC, VERSUS_RETRIEVAL
from t2m.bench.systems import system_name
from t2m.process_memory import peak_rss_mb


def _verdict_word(comparison: dict[str, Any], better: str, worse: str, unclear: str) -> str:
    """``better`` / ``worse`` when the 95% interval excludes zero on that side, else ``unclear``."""
    if not comparison["excludes_zero"]:
        return unclear
    return better if comparison["delta"] > 0 else worse


def best_default_system(task: str, systems: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Of the systems ``t2m translate`` runs without extra files -- the model at the headline beam ("model")
    and retrieval (the ranked nearest pair, "retrieval+ranker", where the checkpoint has a ranker, else
    "retrieval") -- the one with the higher mean of :data:`DEFAULT_CHOICE_METRICS` (the model on a tie):
    {"system": bench name, "translate": its ``--system``, "metrics", "scores"}; None when the bench has
    neither."""
    metrics = DEFAULT_CHOICE_METRICS[task]
    retrieval = "retrieval+ranker" if "retrieval+ranker" in systems else "retrieval"
    scores = {}
    for name in ("model", retrieval):
        values = [systems.get(name, {}).get("metrics", {}).get(m) for m in metrics]
        if all(isinstance(v, (int, float)) for v in values):
            scores[name] = round(sum(values) / len(values), 4)
    if not scores:
        return None
    best = max(scores, key=lambda name: (scores[name], name == "model"))
    return {"system": best, "translate": "model" if best == "model" else "retrieval", "metrics": list(metrics),
            "scores": scores}


def verdicts(bench: dict[str, Any]) -> list[str]:
    """Plain statements answering the bench's questions from the numbers (never flattering)."""
    lines = []
    for task, t in bench["tasks"].items():
        comps = {(c["system"], c["baseline"], c["metric"]): c for c in t.get("comparisons", [])}
        primary = PRIMARY_METRIC[task]
        knn = (t.get("datastore") or {}).get("knn", {})
        if knn.get("lambda") == 0:
            lines.append(f"{task}: tuning on the dev slice chose λ = 0, i.e. no retrieval: model + kNN decodes as "
                         "the model alone.")
        changed = t.get("changed_outputs")
        if changed is not None:
            lines.append(f"{task}: retrieval changed {changed} of {t['rows']} test outputs at the headline beam.")
        c = comps.get(("model+knn", "model", primary))
        if c is not None and c.get("delta") is not None and None not in c["ci95"]:
            lo, hi = c["ci95"]
            word = _verdict_word(c, "improves on", "is worse than", "is not distinguishable from")
            lines.append(f"{task}: model + kNN {word} the model alone on {primary} "
                         f"(difference {c['delta']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], {t['rows']} test rows).")
        others = []
        for metric in HEADLINE_METRICS[task][1:]:
            c = comps.get(("model+knn", "model", metric))
            if c is not None and c.get("delta") is not None and None not in c["ci95"]:
                word = _verdict_word(c, "better", "worse", "no clear difference")
                others.append(f"{metric} {c['delta']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] ({word})")
        if others:
            lines.append(f"{task}: model + kNN minus the model alone on the other headline metrics: " + "; ".join(others) + ".")
        for system, label in (("model", "the model"), ("model+knn", "model + kNN"),
                              ("retrieval+ranker", "retrieval + the neighbour ranker")):
            for metric in VERSUS_RETRIEVAL[task]:
                c = comps.get((system, "retrieval", metric))
                if c is None or c.get("delta") is None or None in c["ci95"]:
                    if c is not None:
                        lines.append(f"{task}: {label} vs the retrieval baseline on {metric}: undefined "
                                     "(no output of one system parses).")
                    continue
                lo, hi = c["ci95"]
                word = _verdict_word(c, "beats", "does NOT beat (is worse than)",
                                     "does NOT clearly beat (interval includes zero)")
                lines.append(f"{task}: {label} {word} the retrieval baseline on {metric} "
                             f"(difference {c['delta']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}]).")
        best = t.get("default_system")
        if best:
            scores = ", ".join(f"{name} {value:.4f}" for name, value in best["scores"].items())
            lines.append(f"{task}: the best system t2m translate can run by default is {best['system']} "
                         f"(mean of {' and '.join(best['metrics'])}: {scores}); t2m ship makes it the default "
                         f"(--system {best['translate']}).")
            lines += _published_verdicts(task, best["system"], t.get("comparisons", []))
    return lines


def _published_verdicts(task: str, system: str, comparisons: list[dict[str, Any]]) -> list[str]:
    """One line per published model: the default system minus its predictions, metric by metric."""
    by_model: dict[str, list[str]] = {}
    for c in comparisons:
        if c["system"] != system or not c["baseline"].startswith("published:"):
            continue
        if c.get("delta") is None or None in c["ci95"]:
            part = f"{c['metric']} undefined"
        else:
            word = _verdict_word(c, "above", "below", "no clear difference")
            part = f"{c['metric']} {c['delta']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] ({word})"
        by_model.setdefault(c["baseline"].split(":", 1)[1], []).append(part)
    return [f"{task}: {system} minus {model}'s published predictions: " + "; ".join(parts) + "."
            for model, parts in by_model.items()]



def cost_summary(systems: dict, store_info: dict | None, beams: Sequence[int], headline_beam: int, task: str) -> dict:
    """Decoding speed with and without kNN at each beam, and what the datastore costs."""
    speeds = []
    for beam in beams:
        m = systems.get(system_name("model", beam, headline_beam, True, task))
        k = systems.get(system_name("model+knn", beam, headline_beam, True, task))
        if not m:
            continue
        ms, ks = m["speed"], (k or {}).get("speed", {"molecules_per_s": None, "tokens_per_s": None})
        slowdown = (ms["molecules_per_s"] / ks["molecules_per_s"]) if ms["molecules_per_s"] and ks["molecules_per_s"] else None
        speeds.append({"beam": beam, "model_molecules_per_s": ms["molecules_per_s"],
                       "knn_molecules_per_s": ks["molecules_per_s"], "model_tokens_per_s": ms["tokens_per_s"],
                       "knn_tokens_per_s": ks["tokens_per_s"],
                       "knn_time_ratio": round(slowdown, 3) if slowdown else None})
    if store_info is None:
        return {"decoding": speeds, "peak_rss_mb": peak_rss_mb()}
    return {"decoding": speeds, "datastore_entries": store_info["entries"],
            "datastore_bytes": store_info["bytes_on_disk"], "datastore_build_seconds": store_info["build_seconds"],
            "datastore_build_seconds_recorded": store_info["build_seconds_recorded"],
            "build_peak_rss_mb": store_info.get("build_peak_rss_mb"), "peak_rss_mb": peak_rss_mb()}

