"""Options that help profile tasks learn (issue 16): a mean-pooled user vector and class weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import after_t1, synthetic_config

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST, TRAIN
from lifelongrec.methods import TaskInfo
from lifelongrec.objectives import objective_for
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream
from lifelongrec.tasknet import pool

FAST = ["train.epochs=2", "train.patience=5"]


def test_pool_last_and_mean_over_real_positions():
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    items = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    states = states * (items > 0).unsqueeze(-1)  # backbones keep padded positions at zero
    torch.testing.assert_close(pool(states, items, "last"), states[:, -1])
    torch.testing.assert_close(pool(states, items, "mean")[0], states[0, 2:].mean(0))
    torch.testing.assert_close(pool(states, items, "mean")[1], states[1].mean(0))


@pytest.mark.parametrize("method", ["finesmax", "peterrec"])
def test_mean_pooling_trains_and_serves_the_same_vectors(tmp_path, method):
    """The predictor reads the pooling from the adapter and reproduces the run's own test accuracy."""
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "train.pooling=mean"])
    run_stream(cfg, method, tmp_path / "run", log=lambda *_: None)
    assert json.loads((tmp_path / "run" / "adapters" / "T3" / "adapter_config.json").read_text())["pooling"] == "mean"
    stream, _ = open_stream(cfg)
    td = stream.task("T3")
    p = Predictor(tmp_path / "run")
    test = td.split == TEST
    right = wins = losses = 0
    majority = np.bincount(td.target[td.split == TRAIN]).argmax()  # the training split's majority class
    for u, end, t in zip(td.user[test], td.end[test], td.target[test]):
        hist = [stream.items[i] for i in stream.seq_items[stream.offsets[u] : stream.offsets[u] + end]]
        probs = p.classify("T3", hist[-cfg.sequence.max_length :])["probabilities"]
        scores = np.array([probs[c] for c in td.classes])
        ok = (scores >= scores[t]).sum() == 1  # the objective's pessimistic tie rule
        right += int(ok)
        wins += int(ok and t != majority)
        losses += int(not ok and t == majority)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    held = rows[-1]["test_after"]["T3"]
    assert right / test.sum() == pytest.approx(held["accuracy"], abs=1e-9)
    # the discordant users against always answering the majority class, for the bench's McNemar test
    assert (held["wins_vs_majority"], held["losses_vs_majority"]) == (wins, losses)
    assert held["majority_accuracy"] == pytest.approx(float((td.target[test] == majority).mean()))


def test_balanced_class_weights(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "train.class_weight=balanced"])
    stream, _ = open_stream(cfg)
    m = after_t1("stl", cfg, stream)
    net = m.before_task(TaskInfo("T3", "classify", 1))
    obj = objective_for(stream, "T3", net, cfg)
    t = obj.train_t
    counts = np.bincount(t, minlength=2)
    torch.testing.assert_close(obj.class_weights, torch.tensor(len(t) / (2 * counts), dtype=torch.float32))
    batch = next(iter(obj.train_batches(np.random.default_rng(0), 1000)))
    got = obj.loss(batch, torch.Generator())[0]
    logits = net.head(net.user_vectors(batch))
    want = F.cross_entropy(logits, batch["target"], weight=obj.class_weights)
    torch.testing.assert_close(got, want)
    plain = objective_for(stream, "T3", net, load_config(synthetic_config(tmp_path), FAST))
    assert plain.class_weights is None
