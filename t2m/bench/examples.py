"""The report's example rows: the best and worst rows of the main system, the rows where retrieval changed
the output most, and the training entries behind a few retrieved tokens."""

from __future__ import annotations

import math
import sys
from typing import Any, Sequence

from t2m.bench.config import BenchConfig, EXAMPLE_SYSTEMS
from t2m.bench.statistics import RowScores, row_key
from t2m.bench.systems import SystemRun
from t2m.knn.inspect import inspect_translation
from t2m.tasks import TEXT2MOL, source_and_target


def _neighbour_context(tokenizer: Any, target: str, position: int, width: int = 4) -> str:
    """The neighbour's target text around its token ``position``, the token itself in [[ ]]."""
    ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if not 0 <= position < len(ids):
        return ""
    before = tokenizer.decode(ids[max(0, position - width):position], skip_special_tokens=True)
    token = tokenizer.decode(ids[position:position + 1], skip_special_tokens=False)
    after = tokenizer.decode(ids[position + 1:position + 1 + width], skip_special_tokens=True)
    return f"{before}[[{token}]]{after}"


def trace_neighbours(translator: Any, store: Any, task: str, source: str, train: Sequence[dict],
                     knn_params: Any, config: BenchConfig, top_tokens: int = 5) -> dict[str, Any] | None:
    """Greedy kNN decoding of ``source`` traced by :func:`t2m.knn.inspect.inspect_translation`: the tokens
    retrieval moved most, each with its nearest training entries. None when tracing fails."""
    try:
        output, report = inspect_translation(
            store, translator.model, translator.tokenizer, translator.model_inputs([source], task)[0], task,
            prompt_style=translator.info.prompt_style,
            k=knn_params.k, lambda_=knn_params.lambda_, temperature=knn_params.temperature, neighbours=3,
            max_new_tokens=config.max_new_tokens, records=list(train))
    except Exception as error:  # an example is decoration: never fatal to the bench
        print(f"bench: tracing retrieval for an example failed: {error}", file=sys.stderr)
        return None
    moved = sorted(report, key=lambda t: -abs(t.moved))[:top_tokens]
    tokens = []
    for item in sorted(moved, key=lambda t: t.step):
        near = []
        for n in item.neighbours:
            record = train[n.row] if 0 <= n.row < len(train) else None
            target = source_and_target(record["smiles"], record["description"], task)[1] if record else ""
            near.append({"row": n.row, "cid": n.cid, "position": n.position, "token": n.token,
                         "distance": round(n.distance, 4),
                         "context": _neighbour_context(translator.tokenizer, target, n.position) if target else ""})
        tokens.append({"step": item.step, "token": item.token, "p_model": round(item.p_model, 4),
                       "p_mixed": round(item.p_mixed, 4), "moved": round(item.moved, 4), "neighbours": near})
    scope = "" if not knn_params.pairs else ", over the whole store (the runs searched each input's nearest pairs)"
    return {"greedy_output": output, "tokens": tokens, "decoding": f"greedy with kNN (traced{scope})"}


def pick_examples(task: str, rows: dict[str, RowScores], runs: dict[str, SystemRun], count: int
                  ) -> dict[str, list[int]]:
    """Row indices for the report: best and worst rows of ``model+knn`` by the headline metric, and
    rows where retrieval changed the model's output the most (largest per-row difference first)."""
    main = "model+knn" if "model+knn" in rows else "model"
    n = len(rows[main])
    order = sorted(range(n), key=lambda i: row_key(rows[main], i))
    picks = {"best": list(reversed(order[-count:])), "worst": order[:count], "changed": []}
    if "model+knn" in runs and "model" in runs:
        changed = [i for i in range(n) if runs["model+knn"].outputs[i] != runs["model"].outputs[i]]

        def gain(i: int) -> float:
            a, b = row_key(rows["model+knn"], i), row_key(rows["model"], i)
            return abs(a[0] - b[0]) * 10 + abs(a[1] - b[1])

        picks["changed"] = sorted(changed, key=lambda i: (-gain(i), i))[:count]
    return picks


def example_rows(task: str, indices: Sequence[int], test: Sequence[dict], sources: Sequence[str],
                 references: Sequence[str], runs: dict[str, SystemRun], rows: dict[str, RowScores],
                 train: Sequence[dict]) -> list[dict[str, Any]]:
    out = []
    for i in indices:
        systems = {}
        for name in EXAMPLE_SYSTEMS:
            if name not in runs:
                continue
            v = rows[name].values
            entry: dict[str, Any] = {"text": runs[name].outputs[i]}
            if task == TEXT2MOL:
                entry.update(valid=bool(v["valid"][i]) and bool(v["parsed"][i]), exact=bool(v["exact"][i]),
                             tanimoto=None if math.isnan(v["morgan"][i]) else round(float(v["morgan"][i]), 4))
            else:
                entry.update(bleu4=round(rows[name].row("bleu4", i), 4), meteor=round(float(v["meteor"][i]), 4))
            if name == "retrieval" and runs[name].neighbours:
                row = runs[name].neighbours[i]
                if 0 <= row < len(train):
                    entry["retrieved_cid"] = train[row].get("cid")
            systems[name] = entry
        out.append({"row": i, "cid": test[i].get("cid"), "source": sources[i], "reference": references[i],
                    "systems": systems})
    return out

