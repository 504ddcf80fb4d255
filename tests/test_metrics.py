"""Metrics against hand-computed arrays. Tie rule: pessimistic (ties rank ahead of the target)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lifelongrec.metrics import accuracy, rank_metrics, ranks_from_scores, ranks_full, ranks_sampled


def _setup():
    # 1-d "vectors" make scores easy to read: score(user u, item i) = u * v_i.
    items = torch.tensor([[0.0], [3.0], [1.0], [2.0], [2.0], [0.5]])  # row 0 is padding
    users = torch.tensor([[1.0], [1.0], [-1.0]])
    return users, items


def test_full_ranks_by_hand():
    users, items = _setup()
    # user 0 scores items 1..5 as [3, 1, 2, 2, 0.5]; target 1 (score 3) is first.
    # user 1, target 3 (score 2): item 1 beats it, item 4 ties -> pessimistic rank 3.
    # user 2 scores [-3, -1, -2, -2, -0.5]; target 5 (score -0.5) is first.
    r = ranks_full(users, items, torch.tensor([1, 3, 5]))
    assert r.tolist() == [1, 3, 1]


def test_padding_row_is_never_a_candidate():
    users = torch.tensor([[1.0]])
    items = torch.tensor([[100.0], [1.0], [2.0]])  # padding would win if it were ranked
    assert ranks_full(users, items, torch.tensor([2])).tolist() == [1]


def test_chunked_equals_unchunked_and_bias():
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(7, 4, generator=g), torch.randn(50, 4, generator=g)
    bias = torch.randn(50, generator=g)
    t = torch.randint(1, 50, (7,), generator=g)
    full = ranks_full(users, items, t, bias=bias)
    assert torch.equal(full, ranks_full(users, items, t, bias=bias, chunk=3))
    scores = users @ items.T + bias
    manual = [(scores[b, 1:] >= scores[b, t[b]]).sum().item() for b in range(7)]
    assert full.tolist() == manual


def test_exclude_seen_items():
    users, items = _setup()
    exclude = (torch.tensor([1]), torch.tensor([1]))  # user 1 has seen item 1: it no longer ranks ahead
    assert ranks_full(users, items, torch.tensor([1, 3, 5]), exclude=exclude).tolist() == [1, 2, 1]
    assert ranks_full(users, items, torch.tensor([1, 3, 5]), exclude=exclude, chunk=2).tolist() == [1, 2, 1]


def test_rank_metrics_by_hand():
    m = rank_metrics(np.array([1, 2, 6]), ks=(5,))
    assert m["MRR@5"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["HR@5"] == pytest.approx(2 / 3)


def test_confidence_interval_by_hand():
    # HR@5 per example: 1, 1, 0 -> mean 2/3, sample std sqrt(1/3), half-width 1.96 * sqrt(1/3) / sqrt(3).
    m = rank_metrics(np.array([1, 2, 6]), ks=(5,), ci=True)
    assert m["ci95"]["HR@5"] == pytest.approx(1.96 * math.sqrt(1 / 3) / math.sqrt(3))
    rr = np.array([1.0, 0.5, 0.0])  # reciprocal ranks within the cutoff
    assert m["ci95"]["MRR@5"] == pytest.approx(1.96 * rr.std(ddof=1) / math.sqrt(3))
    assert "ci95" not in rank_metrics(np.array([1, 2, 6]), ks=(5,))  # only on request
    assert math.isnan(rank_metrics(np.array([3]), ks=(5,), ci=True)["ci95"]["HR@5"])  # one example: unknown


def test_k_larger_than_catalogue():
    users, items = _setup()  # 5 real items
    r = ranks_full(users, items, torch.tensor([1, 3, 5]))
    m = rank_metrics(r, ks=(100,))
    assert m["HR@100"] == 1.0 and m["MRR@100"] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_accuracy_with_ties_is_pessimistic():
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.7, 0.2]])
    r = ranks_from_scores(scores, torch.tensor([1, 0, 0]))
    assert r.tolist() == [1, 2, 1]
    assert accuracy(r) == pytest.approx(2 / 3)


def test_constant_scores_rank_last():
    users, items = torch.zeros(2, 3), torch.randn(11, 3)
    assert ranks_full(users, items, torch.tensor([1, 10])).tolist() == [10, 10]


def test_sampled_ranks_exclude_target_from_negatives():
    g = torch.Generator().manual_seed(1)
    users = torch.ones(500, 1)
    items = torch.arange(0, 6, dtype=torch.float32)[:, None]  # item i scores i
    r = ranks_sampled(users, items, torch.full((500,), 5), n_negatives=4, generator=g)
    assert (r == 1).all()  # the best item never meets itself as a negative, so never ties
    r = ranks_sampled(users, items, torch.full((500,), 1), n_negatives=4, generator=g)
    assert (r == 5).all()
