"""The kNN distribution and its log-space interpolation, against a direct probability-space reference."""

from __future__ import annotations

import math

import pytest
import torch

from datastore.combine import interpolate_log_probs, knn_log_probs
from datastore.params import KNNParams


def _reference(distances, values, vocab, temperature):
    """p_kNN in probability space, one neighbour at a time."""
    out = torch.zeros(distances.shape[0], vocab, dtype=torch.float64)
    for i in range(distances.shape[0]):
        weights = {}
        for d, v in zip(distances[i].tolist(), values[i].tolist()):
            if v < 0 or not math.isfinite(d):
                continue
            weights[v] = weights.get(v, 0.0) + math.exp(-d / temperature)
        total = sum(weights.values())
        for v, w in weights.items():
            out[i, v] = w / total
    return out


def test_knn_log_probs_match_the_definition():
    generator = torch.Generator().manual_seed(0)
    distances = torch.rand(5, 8, generator=generator) * 30  # (n, k)
    values = torch.randint(0, 6, (5, 8), generator=generator)  # repeated values within a row
    values[1, 3] = -1  # a missing neighbour (IVF found fewer than k)
    distances[2, 5] = float("inf")
    for temperature in (0.5, 10.0):
        got = knn_log_probs(distances, values, vocab_size=9, temperature=temperature).exp().double()
        assert torch.allclose(got, _reference(distances, values, 9, temperature), atol=1e-6)
        assert torch.allclose(got.sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-6)


def test_knn_log_probs_do_not_underflow_far_neighbours():
    # exp(-d/T) underflows to 0 in float32 for both neighbours; the log-space sum still gives 1/2 each
    distances = torch.tensor([[5000.0, 5000.0 + 1e-3]])
    values = torch.tensor([[3, 4]])
    got = knn_log_probs(distances, values, vocab_size=6, temperature=1.0)
    assert torch.allclose(got[0, 3:5].exp(), torch.tensor([0.5, 0.5]), atol=1e-3)
    assert torch.isneginf(got[0, [0, 1, 2, 5]]).all()


def test_row_without_neighbours_is_empty_and_falls_back_to_the_model():
    distances = torch.tensor([[1.0, 2.0], [float("inf"), float("inf")]])
    values = torch.tensor([[1, 2], [-1, -1]])
    knn = knn_log_probs(distances, values, vocab_size=4, temperature=1.0)
    assert torch.isneginf(knn[1]).all()
    model = torch.log_softmax(torch.randn(2, 4), -1)
    mixed = interpolate_log_probs(model, knn, 0.7)
    assert torch.equal(mixed[1], model[1])
    assert torch.allclose(mixed[0].exp().sum(), torch.tensor(1.0), atol=1e-6)


def test_interpolation_endpoints_are_exact_and_middle_is_the_mixture():
    model = torch.log_softmax(torch.randn(3, 7), -1)
    knn = knn_log_probs(torch.rand(3, 4) * 5, torch.randint(0, 7, (3, 4)), 7, 2.0)
    assert torch.equal(interpolate_log_probs(model, knn, 0.0), model)
    assert torch.equal(interpolate_log_probs(model, knn, 1.0), knn)
    mixed = interpolate_log_probs(model, knn, 0.3).exp()
    assert torch.allclose(mixed, 0.3 * knn.exp() + 0.7 * model.exp(), atol=1e-6)
    with pytest.raises(ValueError):
        interpolate_log_probs(model, knn, 1.5)


def test_knn_params_validate_and_round_trip():
    params = KNNParams(k=8, lambda_=0.25, temperature=4.0)
    assert KNNParams.from_json(params.to_json()) == params
    assert params.replace(k=2) == KNNParams(2, 0.25, 4.0)
    for bad in ({"k": 0}, {"lambda_": -0.1}, {"temperature": 0.0}):
        with pytest.raises(ValueError):
            KNNParams(**bad)


def test_sparse_mixing_equals_the_dense_definition():
    from datastore.combine import mix_neighbours

    generator = torch.Generator().manual_seed(1)
    distances = torch.rand(6, 8, generator=generator) * 20
    values = torch.randint(0, 5, (6, 8), generator=generator)  # many shared tokens, token 0 included
    values[2, :4] = -1
    values[4] = -1  # a row without neighbours
    distances[3, 0] = float("inf")
    model = torch.log_softmax(torch.randn(6, 11, generator=generator), -1)
    for lambda_ in (0.0, 0.2, 0.9, 1.0):
        dense = interpolate_log_probs(model, knn_log_probs(distances, values, 11, 3.0), lambda_)
        sparse = mix_neighbours(model, distances, values, lambda_, 3.0)
        assert torch.allclose(dense, sparse, atol=1e-6), lambda_
        assert torch.equal(torch.isneginf(dense), torch.isneginf(sparse))
    assert torch.equal(mix_neighbours(model, distances, values, 0.7, 3.0)[4], model[4])


def test_blocked_tokens_stay_blocked_and_rows_renormalise():
    """Tokens an earlier processor set to -inf (n-gram blocking) stay -inf; each row equals log_softmax of
    the dense mixture with those tokens masked; a row left empty (λ = 1, every neighbour blocked) keeps
    the model's distribution."""
    from datastore.combine import mix_neighbours

    generator = torch.Generator().manual_seed(2)
    distances = torch.rand(6, 8, generator=generator) * 20
    values = torch.randint(0, 6, (6, 8), generator=generator)
    values[4] = -1  # a row without neighbours
    values[5] = 3  # every neighbour on token 3, which is blocked below
    scores = torch.randn(6, 11, generator=generator)
    blocked = torch.zeros(6, 11, dtype=torch.bool)
    blocked[:, 3] = True
    blocked[0, values[0, 0]] = True  # a retrieved token blocked in one row
    blocked[1, 7] = True  # a token no neighbour retrieved
    model = torch.log_softmax(scores.masked_fill(blocked, float("-inf")), -1)
    for lambda_ in (0.2, 0.9, 1.0):
        dense = interpolate_log_probs(model, knn_log_probs(distances, values, 11, 3.0), lambda_)
        want = torch.log_softmax(dense.masked_fill(blocked, float("-inf")), -1)
        empty = ~torch.isfinite(want).any(-1)
        want[empty] = model[empty]
        got = mix_neighbours(model, distances, values, lambda_, 3.0)
        assert torch.allclose(got, want, atol=1e-5), lambda_
        assert torch.equal(torch.isneginf(got), blocked | torch.isneginf(want))
        assert torch.allclose(got.exp().sum(-1), torch.ones(6), atol=1e-5)
    assert bool(empty[5]) and torch.equal(mix_neighbours(model, distances, values, 1.0, 3.0)[5], model[5])


def test_target_mixture_is_the_dense_mixture_at_the_target():
    """Tuning's teacher-forced score (mix_target_log_probs, the reference token only) is the decoding
    mixture's log-probability of that token, float64 kept."""
    from datastore.combine import mix_target_log_probs

    generator = torch.Generator().manual_seed(3)
    distances = (torch.rand(7, 6, generator=generator) * 20).double()
    values = torch.randint(0, 5, (7, 6), generator=generator)
    values[4] = -1  # a row without neighbours: the model's
    targets = torch.randint(0, 11, (7,), generator=generator)
    model = torch.log_softmax(torch.randn(7, 11, generator=generator, dtype=torch.float64), -1)
    for lambda_ in (0.0, 0.3, 1.0):
        dense = interpolate_log_probs(model, knn_log_probs(distances, values, 11, 2.0).double(), lambda_)
        got = mix_target_log_probs(model.gather(1, targets[:, None])[:, 0], distances, values, targets, lambda_, 2.0)
        assert got.dtype == torch.float64
        want = dense.gather(1, targets[:, None])[:, 0]
        assert torch.equal(torch.isneginf(got), torch.isneginf(want)), lambda_
        finite = torch.isfinite(want)
        assert torch.allclose(got[finite], want[finite], atol=1e-6), lambda_
    assert torch.equal(got[4], model[4, targets[4]])


def test_one_lambda_check():
    """λ is checked in one place (datastore.params.check_lambda), whichever way it comes in."""
    from datastore.combine import mix_log_probs, mix_neighbours
    from datastore.params import check_lambda

    model = torch.log_softmax(torch.randn(2, 5), -1)
    for call in (lambda: check_lambda(1.5), lambda: KNNParams(lambda_=-0.1), lambda: mix_log_probs(model, model, 2.0),
                 lambda: interpolate_log_probs(model, model, -1.0),
                 lambda: mix_neighbours(model, torch.ones(2, 1), torch.zeros(2, 1, dtype=torch.long), 1.1, 1.0)):
        with pytest.raises(ValueError, match=r"lambda_=.*: must be in \[0, 1\]"):
            call()
