"""Retrieval-augmented decoding inside ``model.generate``: a LogitsProcessor fed by a forward hook.

The hook (the same one that built the store, :class:`datastore.hooks.StateCapture`) keeps the state the
LM head read in the latest forward pass; with the key/value cache that pass covered only the newest
position, without it the whole prefix, so the processor takes the last position: (batch*beams, dim).
The generate loop itself is not copied, so greedy, beam search and sampling all work.

What ``generate`` (transformers 5) hands a processor: greedy search and sampling pass the raw logits of
the last position; beam search passes ``log_softmax(logits)``. The processor applies ``log_softmax``
first, which is the identity on log-probabilities, so it is right for both, and returns normalised
log-probabilities (beam search adds them to the running beam scores; sampling's softmax of them is the
mixed distribution). Tokens that an earlier processor set to ``-inf`` (min length, bad words, ...) stay
``-inf`` after mixing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from datastore.combine import mix_neighbours
from datastore.hooks import StateCapture
from datastore.retrieve import Neighbours, Restriction, Retriever, RowRestrictedRetriever
from datastore.params import KNNParams
from datastore.store import Datastore


@dataclass
class StepTrace:
    """What retrieval did at one decoding step, for every hypothesis (n = batch*beams).

    ``model_log_probs`` / ``mixed_log_probs``: (n, V); ``neighbours``: the k found per hypothesis.
    """

    neighbours: Neighbours
    model_log_probs: torch.Tensor
    mixed_log_probs: torch.Tensor


class KNNLogitsProcessor(LogitsProcessor):
    """Replaces the step's scores with log(λ p_kNN + (1 - λ) p_model) for every hypothesis. With a
    ``restriction`` (a :class:`datastore.RowRestrictedRetriever` ``retriever``), every search passes it: what
    each input of the batch may retrieve (:meth:`restricted` gives the processor of another batch)."""

    def __init__(self, retriever: Retriever | RowRestrictedRetriever, capture: StateCapture, params: KNNParams,
                 trace: list[StepTrace] | None = None, restriction: Restriction | None = None) -> None:
        self.retriever = retriever
        self.capture = capture
        self.params = params
        self.trace = trace
        self.restriction = restriction

    def restricted(self, restriction: Restriction) -> "KNNLogitsProcessor":
        """This processor (the same retriever, hook, parameters and trace) for a batch whose inputs may
        retrieve what ``restriction`` allows."""
        return KNNLogitsProcessor(self.retriever, self.capture, self.params, self.trace, restriction)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        model_log_probs = torch.log_softmax(scores.float(), dim=-1)  # (n, V); identity on log-probs
        if self.params.lambda_ == 0.0 and self.trace is None:
            return model_log_probs.to(scores.dtype)
        state = self.capture.last_position()  # (n, dim)
        if state.shape[0] != scores.shape[0]:
            raise RuntimeError(
                f"kNN decoding: the hooked decoder state has {state.shape[0]} rows but the scores have "
                f"{scores.shape[0]}; this generation mode (e.g. contrastive or assisted decoding) runs extra "
                "forward passes between steps: use greedy, beam search or sampling"
            )
        if self.restriction is None:
            neighbours = self.retriever.search(state, self.params.k)  # (n, k) each
        else:
            neighbours = self.retriever.search(state, self.params.k, self.restriction)
        mixed = mix_neighbours(model_log_probs, neighbours.distances, neighbours.values, self.params.lambda_,
                               self.params.temperature)  # (n, V); tokens blocked in scores stay blocked
        if self.trace is not None:
            self.trace.append(StepTrace(neighbours, model_log_probs.detach(), mixed.detach()))
        return mixed.to(scores.dtype)


@contextmanager
def knn_generation(model: Any, store: Datastore | str | os.PathLike, k: int | None = None,
                   lambda_: float | None = None, temperature: float | None = None, *,
                   params: KNNParams | None = None, retriever: Retriever | RowRestrictedRetriever | None = None,
                   nprobe: int | None = None, ef_search: int | None = None, exact: bool = False,
                   use_gpu: bool | str = "auto", check: bool = True,
                   trace: list[StepTrace] | None = None) -> Iterator[LogitsProcessorList]:
    """Hook ``model`` for kNN decoding with ``store`` and yield the processors for ``generate``::

        with knn_generation(model, store, k=16, lambda_=0.3, temperature=10) as processors:
            out = model.generate(**inputs, num_beams=5, logits_processor=processors)

    ``params`` (default: the store's JSON, its tuned values when tuned) with ``k`` / ``lambda_`` /
    ``temperature`` substituted where given. ``retriever``: the one to search (default: the store's index,
    or its keys with ``exact``; for a :class:`datastore.RowRestrictedRetriever` the caller gives each
    batch's processor its restriction with :meth:`KNNLogitsProcessor.restricted` -- ``params.pairs`` is the
    caller's).
    ``check`` refuses a model the store was not built from. ``exact`` searches the keys exactly instead
    of the saved index. ``trace``, when a list, receives a :class:`StepTrace` per step. The hook is
    removed on exit, also on errors.
    """
    if not isinstance(store, Datastore):
        store = Datastore.load(Path(store))
    if check:
        store.check_matches(model=model)
    params = (params or store.knn_params).replace(k=k, lambda_=lambda_, temperature=temperature)
    if retriever is None:
        retriever = store.retriever(nprobe=nprobe, ef_search=ef_search, use_gpu=use_gpu, exact=exact)
    with StateCapture(model, store.layer) as capture:
        yield LogitsProcessorList([KNNLogitsProcessor(retriever, capture, params, trace)])
