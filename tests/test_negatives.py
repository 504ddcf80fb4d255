"""Negatives of the sampled and BPR item losses: uniform (the default, unchanged) or LambdaFM's static
popularity sampler (`train.negatives=popularity`, Conure's T2/T3 with rho = 0.3)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from synthetic import after_t1, synthetic_config

from lifelongrec.config import TrainConfig, load_config
from lifelongrec.errors import ConfigError
from lifelongrec.heads import ItemHead, draw_negatives, popularity_negatives
from lifelongrec.runner import run_stream

FAST = ["train.epochs=2", "train.patience=5"]


def _rank_order(targets: np.ndarray, n_items: int) -> list[int]:
    """Items 1..N by count among targets (descending), ties by item id: the sampler's rank order."""
    counts = {i: int((targets == i).sum()) for i in range(1, n_items + 1)}
    return sorted(counts, key=lambda i: (-counts[i], i))


# ------------------------------------------------------------------ the distribution


def test_popularity_distribution_is_normalised_and_decreasing_in_rank():
    rng = np.random.default_rng(0)
    n = 40
    targets = rng.zipf(1.5, 500) % 30 + 1  # skewed, with ties; items 31..40 never a target
    p = popularity_negatives(targets, n, 0.3)
    assert p.shape == (n + 1,) and p[0] == 0
    assert math.isclose(float(p.sum()), 1.0, rel_tol=0, abs_tol=1e-12)
    assert (p[1:] > 0).all()
    by_rank = p[_rank_order(targets, n)]
    assert (by_rank[1:] < by_rank[:-1]).all()  # strictly decreasing in popularity rank
    unseen = sorted(set(range(1, n + 1)) - set(targets.tolist()))
    seen = sorted(set(targets.tolist()))
    assert len(unseen) >= 10 and p[unseen].max() < p[seen].min()  # never a target: the tail
    assert (p[unseen][1:] < p[unseen][:-1]).all()  # among them, by item id


def test_popularity_distribution_matches_the_formula_by_hand():
    # counts: item 1: 2, item 2: 1, item 3: 3, item 4: 0, item 5: 1 -> ranks 3:0, 1:1, 2:2, 5:3, 4:4
    # (items 2 and 5 tie on one target each: the lower id ranks first)
    targets = np.array([3, 1, 3, 2, 1, 3, 5])
    n, rho = 5, 0.5
    rank = {3: 0, 1: 1, 2: 2, 5: 3, 4: 4}
    w = {i: math.exp(-(r + 1) / (rho * n)) for i, r in rank.items()}
    want = [0.0] + [w[i] / sum(w.values()) for i in range(1, n + 1)]
    got = popularity_negatives(targets, n, rho)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    # rho sets the skew: smaller rho, steeper
    assert popularity_negatives(targets, n, 0.1)[3] > got[3] > popularity_negatives(targets, n, 2.0)[3]


def test_sampling_frequencies_follow_the_distribution():
    rng = np.random.default_rng(1)
    n = 25
    targets = rng.zipf(1.3, 300) % n + 1
    p = popularity_negatives(targets, n, 0.3).float()
    draws = 200_000
    g = torch.Generator().manual_seed(7)
    neg = draw_negatives(n, (draws // 100, 100), g, "cpu", p)
    assert neg.shape == (draws // 100, 100) and neg.dtype == torch.long
    assert neg.min() >= 1 and neg.max() <= n  # never padding
    observed = np.bincount(neg.reshape(-1).numpy(), minlength=n + 1)[1:]
    expected = p[1:].double().numpy() * draws
    expected *= draws / expected.sum()  # float32 rounding: chisquare wants equal totals
    chi2 = stats.chisquare(observed, expected)
    assert chi2.pvalue > 1e-3, chi2
    # and the skew is real: the most popular item is drawn several times as often as the least
    order = _rank_order(targets, n)
    assert observed[order[0] - 1] > 5 * observed[order[-1] - 1]


def test_no_examples_draw_no_negatives():
    p = popularity_negatives(np.array([1, 2]), 3)
    assert draw_negatives(3, (0,), torch.Generator().manual_seed(0), "cpu", p).shape == (0,)


# ------------------------------------------------------------------ the head's losses


def _old_bpr(head: ItemHead, h, t, gen):
    """The BPR loss before negatives could be chosen (uniform), copied."""
    neg = torch.randint(1, head.n_items + 1, t.shape, generator=gen, device=h.device)
    w = head.items
    diff = (h * (w[t] - w[neg])).sum(-1) + head.bias[t] - head.bias[neg]
    return -F.logsigmoid(diff).mean()


def _old_sampled(head: ItemHead, h, t, n_neg, gen):
    """The sampled-softmax loss before negatives could be chosen (uniform), copied."""
    neg = torch.randint(1, head.n_items + 1, (n_neg,), generator=gen, device=h.device)
    w = head.items
    pos = (h * w[t]).sum(-1) + head.bias[t]
    negs = torch.addmm(head.bias[neg], h, w[neg].T)
    negs = negs.masked_fill(neg[None, :] == t[:, None], float("-inf"))
    return F.cross_entropy(torch.cat([pos[:, None], negs], 1), torch.zeros_like(t))


def test_uniform_default_draws_exactly_the_old_negatives():
    torch.manual_seed(0)
    n = 50
    head = ItemHead(8, n)
    with torch.no_grad():
        head.bias.normal_()
    h, t = torch.randn(33, 8), torch.randint(1, n + 1, (33,))
    for seed in range(3):
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(draw_negatives(n, (33,), a, "cpu"), torch.randint(1, n + 1, (33,), generator=b))
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(head.loss(h, t, "bpr", 0, a), _old_bpr(head, h, t, b))
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(head.loss(h, t, "sampled", 10, a), _old_sampled(head, h, t, 10, b))
        # the generators were advanced alike: what comes next is the same too
        assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_losses_draw_from_the_given_distribution():
    torch.manual_seed(0)
    n = 10
    head = ItemHead(4, n)
    h, t = torch.randn(6, 4), torch.tensor([1, 2, 3, 4, 1, 2])
    only7 = torch.zeros(n + 1)
    only7[7] = 1.0  # every negative is item 7
    g = torch.Generator().manual_seed(0)
    w, b = head.items, head.bias
    bpr = -F.logsigmoid((h * (w[t] - w[7])).sum(-1) + b[t] - b[7]).mean()
    torch.testing.assert_close(head.loss(h, t, "bpr", 0, g, only7), bpr)
    pos = (h * w[t]).sum(-1) + b[t]
    neg = (h @ w[7] + b[7])[:, None].expand(-1, 3)
    sampled = F.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros_like(t))
    torch.testing.assert_close(head.loss(h, t, "sampled", 3, g, only7), sampled)


# ------------------------------------------------------------------ config and the objective


def test_config_defaults_stay_out_of_dumps_and_rho_must_be_positive():
    assert TrainConfig().negatives == "uniform" and TrainConfig().popularity_rho == 0.3
    dumped = TrainConfig().model_dump(mode="json")
    assert "negatives" not in dumped and "popularity_rho" not in dumped  # configs and resume keys as before
    set_ = TrainConfig(negatives="popularity", popularity_rho=0.5).model_dump(mode="json")
    assert set_["negatives"] == "popularity" and set_["popularity_rho"] == 0.5
    assert TrainConfig.model_validate(set_) == TrainConfig(negatives="popularity", popularity_rho=0.5)


def test_bad_negatives_settings_are_config_errors(tmp_path):
    for bad in ("train.popularity_rho=0", "train.popularity_rho=-1", "train.negatives=zipf"):
        with pytest.raises(ConfigError):
            load_config(synthetic_config(tmp_path), [bad])


def _item_objective(tmp_path, sets: list[str]):
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.methods import TaskInfo
    from lifelongrec.objectives import objective_for

    cfg = load_config(synthetic_config(tmp_path), [*FAST, *sets])
    stream, _ = open_stream(cfg)
    m = after_t1("stl", cfg, stream)
    net = m.before_task(TaskInfo("T2", "item_rec", 1))
    return stream, objective_for(stream, "T2", net, cfg)


def test_item_objective_builds_the_distribution_from_its_training_targets(tmp_path):
    from lifelongrec.data.stream import TRAIN

    stream, obj = _item_objective(tmp_path / "a", [])
    assert obj.neg_dist is None  # uniform
    stream, obj = _item_objective(tmp_path / "b", ["train.negatives=popularity", "train.popularity_rho=0.5"])
    td = stream.task("T2")
    want = popularity_negatives(td.target[td.split == TRAIN], stream.n_items, 0.5).float()
    assert obj.neg_dist is not None and obj.neg_dist.dtype == torch.float32
    torch.testing.assert_close(obj.neg_dist, want)
    batch = next(iter(obj.train_batches(np.random.default_rng(0), 16)))
    loss, n = obj.loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and n == len(batch["target"])


def test_stream_trains_with_bpr_and_popularity_negatives(tmp_path):
    sets = [*FAST, "train.item_loss=bpr", "train.negatives=popularity"]
    cfg = load_config(synthetic_config(tmp_path), sets)
    s = run_stream(cfg, "finesmax", tmp_path / "run", log=lambda *_: None)
    assert s["complete"] and s["tasks"] == ["T1", "T2", "T3"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    t2 = rows[1]["test_after"]["T2"]
    assert all(math.isfinite(v) for k, v in t2.items() if k.startswith(("MRR", "NDCG", "HR")))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["negatives"] == "popularity" and saved["train"]["item_loss"] == "bpr"
