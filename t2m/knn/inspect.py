"""Looking inside a kNN-MT decoding: each generated token with its probability under the model alone
and after retrieval, and the training rows its neighbours came from (``t2m datastore inspect``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from t2m.decoding.batching import encode_sources
from t2m.decoding.translator import Translator
from t2m.model.checkpoint import CheckpointInfo
from t2m.options import DecodingOptions, RetrievalOptions, SmilesConstraints
from t2m.tasks import add_prompt


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
    generated token). ``records``: the store's training rows, to name each neighbour's CID. Decoded by
    :meth:`t2m.decoding.translator.Translator.decode` -- the code ``t2m translate`` decodes with -- with the store's kNN
    parameters (``k``, ``lambda_``, ``temperature`` substituted where given) over the whole store, and
    nothing else: no repetition settings, no SMILES constraint."""
    task = task or store.task
    store.check_matches(model=model)
    translator = Translator(model, tokenizer, CheckpointInfo(path="", prompt_style=prompt_style))
    encoded = encode_sources(tokenizer, [add_prompt(text, task, prompt_style)], translator.max_source_len)
    trace: list = []
    retrieval = RetrievalOptions(store, store.knn_params.replace(k=k, lambda_=lambda_, temperature=temperature),
                                 exact=exact, trace=trace)
    [result] = translator.decode(encoded, task, DecodingOptions(max_new_tokens=max_new_tokens),
                                 SmilesConstraints(valid_smiles=False, syntax=False, valence=False), retrieval)
    generated = result.token_ids[0]
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
    return result.output, report


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
