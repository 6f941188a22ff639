"""Combiner: the kNN distribution over tokens and its interpolation with the model's, in log space.

p_kNN(v) ∝ Σ_{neighbours j with value v} exp(-d_j / T)       (d = squared L2 distance)
log p(v) = logsumexp(log λ + log p_kNN(v), log(1 - λ) + log p_model(v))

Nothing is mixed in probability space: the per-token sums are exact log-sum-exps (a scatter of the
per-token maximum, then a scatter-add of exp(logit - max)), so tiny probabilities do not underflow.
"""

from __future__ import annotations

import math

import torch


def knn_log_probs(distances: torch.Tensor, values: torch.Tensor, vocab_size: int, temperature: float
                  ) -> torch.Tensor:
    """(n, vocab_size) log p_kNN from neighbours' ``distances`` (n, k) and token ``values`` (n, k).

    Neighbours with value < 0 or non-finite distance are ignored. A row with no usable neighbour is all
    ``-inf`` (callers fall back to the model there, see :func:`interpolate_log_probs`).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = distances.shape[0]
    valid = (values >= 0) & torch.isfinite(distances)  # (n, k)
    logits = torch.where(valid, -distances.float() / temperature, float("-inf"))  # (n, k)
    index = values.clamp(min=0).long()  # (n, k)
    if (index >= vocab_size).any():
        raise ValueError(f"a neighbour's token id {int(index.max())} is outside the vocabulary of {vocab_size}: "
                         "the store was built with another tokenizer")
    full = torch.full((n, vocab_size), float("-inf"), device=distances.device)
    token_max = full.scatter_reduce(1, index, logits, reduce="amax", include_self=True)  # (n, V)
    shifted = torch.where(valid, logits - token_max.gather(1, index), float("-inf"))  # (n, k), <= 0
    sums = torch.zeros_like(full).scatter_add(1, index, shifted.exp())  # (n, V), >= 1 where present
    per_token = sums.log() + token_max  # (n, V): log Σ exp(logit) per token, -inf where absent
    total = torch.logsumexp(logits, dim=-1, keepdim=True)  # (n, 1)
    return per_token - torch.where(torch.isfinite(total), total, torch.zeros_like(total))


def interpolate_log_probs(model_log_probs: torch.Tensor, knn_log_probs: torch.Tensor, lambda_: float
                          ) -> torch.Tensor:
    """(n, V) log(λ p_kNN + (1 - λ) p_model), in log space. λ = 0 returns ``model_log_probs`` and λ = 1
    ``knn_log_probs`` exactly; rows where p_kNN is empty (no neighbour) keep the model's distribution."""
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lambda_}")
    if lambda_ == 0.0:
        return model_log_probs
    has_knn = torch.isfinite(knn_log_probs).any(dim=-1, keepdim=True)  # (n, 1)
    if lambda_ == 1.0:
        mixed = knn_log_probs
    else:
        mixed = torch.logaddexp(knn_log_probs + math.log(lambda_), model_log_probs + math.log1p(-lambda_))
    return torch.where(has_knn, mixed, model_log_probs)
