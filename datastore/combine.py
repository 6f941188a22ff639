"""Combiner: the kNN distribution over tokens and its interpolation with the model's, in log space.

p_kNN(v) ∝ Σ_{neighbours j with value v} exp(-d_j / T)       (d = squared L2 distance)
log p(v) = logsumexp(log λ + log p_kNN(v), log(1 - λ) + log p_model(v))      (:func:`mix_log_probs`)

:func:`mix_log_probs` is the one place the two distributions are mixed; decoding
(:func:`mix_neighbours`, sparse over the k retrieved tokens), the dense form
(:func:`interpolate_log_probs`) and tuning's teacher-forced scores (:func:`mix_target_log_probs`, the
reference token only) all go through it. λ and T are checked by :mod:`datastore.params`.

Nothing is mixed in probability space: the per-token sums are exact log-sum-exps over the neighbours
that share a token (computed on the (n, k) neighbours, then scattered into the vocabulary), so tiny
probabilities do not underflow.
"""

from __future__ import annotations

import math

import torch

from datastore.params import check_lambda, check_temperature


def _neighbour_logits(distances: torch.Tensor, values: torch.Tensor, temperature: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(valid, logits, log_total): which neighbours count (value >= 0, finite distance), their -d / T
    (``-inf`` where not valid), and log Σ exp(logits) per row (0 in a row without any, so that
    subtracting it leaves ``-inf`` there)."""
    check_temperature(temperature)
    valid = (values >= 0) & torch.isfinite(distances)  # (n, k)
    # float32 (float64 kept: tuning sums log-likelihoods over a whole dev set)
    scaled = distances if distances.dtype == torch.float64 else distances.float()
    logits = torch.where(valid, -scaled / temperature, float("-inf"))  # (n, k)
    total = torch.logsumexp(logits, dim=-1, keepdim=True)  # (n, 1), -inf in a row without neighbours
    return valid, logits, torch.where(torch.isfinite(total), total, torch.zeros_like(total))


def knn_token_log_probs(distances: torch.Tensor, values: torch.Tensor, temperature: float) -> torch.Tensor:
    """(n, k) log p_kNN(values[i, j]) for each neighbour (neighbours sharing a token get the same
    number); ``-inf`` for missing neighbours (value < 0 or non-finite distance) and in rows without any."""
    valid, logits, log_total = _neighbour_logits(distances, values, temperature)
    # log Σ exp(logit) over the neighbours sharing each neighbour's token: (n, k, k) is tiny next to (n, V)
    same = (values[:, :, None] == values[:, None, :]) & valid[:, None, :]  # (n, k, k)
    per_neighbour = torch.logsumexp(torch.where(same, logits[:, None, :], float("-inf")), dim=-1)  # (n, k)
    return torch.where(valid, per_neighbour - log_total, float("-inf"))


def _token_index(values: torch.Tensor, vocab_size: int) -> torch.Tensor:
    index = values.clamp(min=0).long()  # (n, k); missing neighbours point at token 0 with -inf mass
    if values.numel() and int(values.max()) >= vocab_size:
        raise ValueError(f"a neighbour's token id {int(values.max())} is outside the vocabulary of {vocab_size}: "
                         "the store was built with another tokenizer")
    return index


def knn_log_probs(distances: torch.Tensor, values: torch.Tensor, vocab_size: int, temperature: float
                  ) -> torch.Tensor:
    """(n, vocab_size) log p_kNN from neighbours' ``distances`` (n, k) and token ``values`` (n, k).

    Neighbours with value < 0 or non-finite distance are ignored. A row with no usable neighbour is all
    ``-inf`` (callers fall back to the model there, see :func:`interpolate_log_probs`).
    """
    per_neighbour = knn_token_log_probs(distances, values, temperature)  # (n, k)
    out = torch.full((values.shape[0], vocab_size), float("-inf"), dtype=per_neighbour.dtype,
                     device=distances.device)  # (n, V)
    # neighbours of one token carry the same value and missing ones -inf: amax makes duplicates harmless
    return out.scatter_reduce_(1, _token_index(values, vocab_size), per_neighbour, reduce="amax")


def mix_log_probs(model_log_probs: torch.Tensor, knn_log_probs: torch.Tensor, lambda_: float) -> torch.Tensor:
    """log(λ p_kNN + (1 - λ) p_model), elementwise and in log space (``logaddexp``, no round trip through
    probabilities): the mixture, for tensors of any one shape. λ = 0 returns ``model_log_probs`` and λ = 1
    ``knn_log_probs`` themselves. Where p_kNN is empty is the caller's to decide (the callers below keep
    the model's distribution there)."""
    check_lambda(lambda_)
    if lambda_ == 0.0:
        return model_log_probs
    if lambda_ == 1.0:
        return knn_log_probs
    return torch.logaddexp(knn_log_probs + math.log(lambda_), model_log_probs + math.log1p(-lambda_))


def interpolate_log_probs(model_log_probs: torch.Tensor, knn_log_probs: torch.Tensor, lambda_: float
                          ) -> torch.Tensor:
    """(n, V) :func:`mix_log_probs` of whole distributions. λ = 0 returns ``model_log_probs`` and λ = 1
    ``knn_log_probs`` exactly; rows where p_kNN is empty (no neighbour) keep the model's distribution."""
    if check_lambda(lambda_) == 0.0:
        return model_log_probs
    has_knn = torch.isfinite(knn_log_probs).any(dim=-1, keepdim=True)  # (n, 1)
    return torch.where(has_knn, mix_log_probs(model_log_probs, knn_log_probs, lambda_), model_log_probs)


def mix_target_log_probs(model_log_probs: torch.Tensor, distances: torch.Tensor, values: torch.Tensor,
                         targets: torch.Tensor, lambda_: float, temperature: float) -> torch.Tensor:
    """(n,) log p(targets[i]) under the mixture, from the model's log-probability of each target
    ``model_log_probs`` (n,) and each row's neighbours (``distances``, ``values``: (n, k)): what
    teacher-forced tuning scores, without building the (n, V) distributions. A row with no usable
    neighbour keeps the model's. Computed in the dtype of ``distances`` when it is float64."""
    _, logits, log_total = _neighbour_logits(distances, values, temperature)  # (n, k), (n, 1)
    hit = values == targets[:, None]  # (n, k) neighbours whose token is the target
    knn = torch.logsumexp(torch.where(hit, logits, float("-inf")), dim=-1) - log_total[:, 0]  # (n,)
    has_knn = torch.isfinite(logits).any(dim=-1)  # (n,)
    return torch.where(has_knn, mix_log_probs(model_log_probs, knn, lambda_), model_log_probs)


def mix_neighbours(model_log_probs: torch.Tensor, distances: torch.Tensor, values: torch.Tensor, lambda_: float,
                   temperature: float) -> torch.Tensor:
    """:func:`interpolate_log_probs` of :func:`knn_log_probs`, computed sparsely: p_kNN is non-zero on at
    most k tokens per row, so only those k columns need a log-sum-exp; the rest is the model's
    log-probability plus log(1 - λ). Same numbers, a fraction of the work on a large vocabulary.

    Tokens an earlier logits processor blocked (``-inf`` in ``model_log_probs``, e.g. by
    ``no_repeat_ngram_size``) stay blocked, and each row is renormalised over the tokens left --
    ``log_softmax`` of the mixture with the blocked tokens masked, computed from the (n, k) neighbours
    alone. A row whose distribution would be empty (λ = 1, every neighbour blocked) keeps the model's."""
    if check_lambda(lambda_) == 0.0:
        return model_log_probs
    per_neighbour = knn_token_log_probs(distances, values, temperature)  # (n, k)
    index = _token_index(values, model_log_probs.shape[-1])  # (n, k)
    has_knn = torch.isfinite(per_neighbour).any(dim=-1, keepdim=True)  # (n, 1)
    at = model_log_probs.gather(1, index)  # (n, k)
    blocked = torch.isneginf(at) & torch.isfinite(per_neighbour)  # (n, k) retrieved tokens that are blocked
    any_blocked = bool(blocked.any())
    # (n, V) the mixture where p_kNN is 0 (every token not retrieved): mix_log_probs with p_kNN = 0, written out
    # to spare a (n, V) logaddexp
    if lambda_ == 1.0:
        mixed = torch.full_like(model_log_probs, float("-inf"))
    else:
        mixed = model_log_probs + math.log1p(-lambda_)
    # (n, k) the mixture at the retrieved tokens; missing neighbours write back the unchanged value (amax
    # lets the mixed value win)
    update = mix_log_probs(at, per_neighbour, lambda_)
    if any_blocked:
        update = update.masked_fill(blocked, float("-inf"))
    mixed.scatter_reduce_(1, index, update, reduce="amax")
    if any_blocked:
        # log of the mass left: λ P_kNN(not blocked) + (1 - λ), P_kNN from each neighbour's own share
        _, logits, log_total = _neighbour_logits(distances, values, temperature)
        allowed = torch.logsumexp(logits.masked_fill(blocked, float("-inf")), dim=-1, keepdim=True) - log_total
        norm = mix_log_probs(torch.zeros_like(allowed), allowed, lambda_)  # p_model of the whole row: 1
        norm = torch.where(has_knn, norm, torch.zeros_like(norm))
        has_knn = has_knn & torch.isfinite(norm)  # λ = 1 with every neighbour blocked: the model's
        mixed = mixed - torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
    if not bool(has_knn.all()):  # rare: rows with no usable neighbour keep the model's distribution
        mixed = torch.where(has_knn, mixed, model_log_probs)
    return mixed
