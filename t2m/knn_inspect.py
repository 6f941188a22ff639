"""Looking inside a kNN-MT decoding: each generated token with its probability under the model alone
and after retrieval, and the training rows its neighbours came from (``t2m datastore inspect``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


# ----------------------------------------------------------------------------------------- inspect


@dataclass
class NeighbourInfo:
    """One retrieved entry: the training row and target position it came from, its token, distance."""

    entry: int
    row: int
    position: int
    token: str
    distance: float
    cid: str | None = None


@dataclass
class TokenInspection:
    """One generated token: its probability under the model alone and after retrieval, and the
    neighbours retrieved for the state that produced it."""

    step: int
    token: str
    token_id: int
    p_model: float
    p_mixed: float
    neighbours: list[NeighbourInfo] = field(default_factory=list)

    @property
    def moved(self) -> float:
        """How much retrieval moved this token's probability (p_mixed - p_model)."""
        return self.p_mixed - self.p_model


def inspect_translation(store: Any, model: Any, tokenizer: Any, text: str, task: str | None = None, *,
                        prompt_style: str = "textchem", k: int | None = None, lambda_: float | None = None,
                        temperature: float | None = None, neighbours: int = 3, max_new_tokens: int = 256,
                        records: Sequence[dict] | None = None, exact: bool = False
                        ) -> tuple[str, list[TokenInspection]]:
    """Greedy-decode ``text`` with retrieval and return (output text, one :class:`TokenInspection` per
    generated token). ``records``: the store's training rows, to name each neighbour's CID."""
    import torch

    from datastore.augment import knn_generation
    from t2m.batching import encode_batch

    task = task or store.task
    batch = encode_batch(tokenizer, [text], None, task, prompt_style)
    device = next(model.parameters()).device
    trace: list = []
    with torch.inference_mode(), knn_generation(model, store, k=k, lambda_=lambda_, temperature=temperature,
                                                exact=exact, trace=trace) as processors:
        out = model.generate(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device), num_beams=1, do_sample=False,
                             max_new_tokens=max_new_tokens, logits_processor=processors)
    generated = out[0, 1:].tolist()  # drop the decoder start token
    report = []
    for step, (token_id, traced) in enumerate(zip(generated, trace)):
        found = []
        for j in range(min(neighbours, traced.neighbours.indices.shape[1])):
            entry = int(traced.neighbours.indices[0, j])
            if entry < 0:
                continue
            row = int(store.rows[entry])
            found.append(NeighbourInfo(
                entry=entry, row=row, position=int(store.positions[entry]),
                token=tokenizer.convert_ids_to_tokens(int(store.values[entry])),
                distance=float(traced.neighbours.distances[0, j]),
                cid=str(records[row].get("cid")) if records is not None and row < len(records) else None))
        report.append(TokenInspection(
            step=step, token=tokenizer.convert_ids_to_tokens(token_id), token_id=token_id,
            p_model=float(traced.model_log_probs[0, token_id].exp()),
            p_mixed=float(traced.mixed_log_probs[0, token_id].exp()), neighbours=found))
        if token_id == tokenizer.eos_token_id:
            break
    return tokenizer.decode(generated, skip_special_tokens=True), report


def format_inspection(output: str, report: Sequence[TokenInspection]) -> str:
    """A plain-text table of :func:`inspect_translation`'s result."""
    lines = [f"output: {output}", "",
             f"{'step':>4}  {'token':<16} {'p_model':>8} {'p_knn_mix':>9} {'moved':>7}   neighbours "
             "(row[cid]@position token d)"]
    for item in report:
        near = "; ".join(
            f"{n.row}{'[' + n.cid + ']' if n.cid else ''}@{n.position} {n.token!r} {n.distance:.3g}"
            for n in item.neighbours)
        lines.append(f"{item.step:>4}  {item.token!r:<16} {item.p_model:>8.4f} {item.p_mixed:>9.4f} "
                     f"{item.moved:>+7.4f}   {near}")
    return "\n".join(lines)
