"""A task's own training settings (`tasks[i].train`): merging, validation, the input window a task
reads (`input_length`), and early stopping on the validation cross-entropy (`monitor: log_loss`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import after_t1, synthetic_config

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST, VALID, stream_key
from lifelongrec.engine import _better
from lifelongrec.errors import ConfigError
from lifelongrec.methods import TaskInfo
from lifelongrec.objectives import objective_for
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream

T3 = "  - {name: T3, kind: classify, label: gender}"


def with_t3_train(folder: Path, train: str, backbone: str = "nextitnet", extra: str = "") -> Path:
    """The synthetic stream with `train: {...}` on its profile task T3."""
    p = synthetic_config(folder, backbone=backbone, extra=extra)
    text = p.read_text()
    assert T3 in text
    p.write_text(text.replace(T3, f"  - {{name: T3, kind: classify, label: gender, train: {{{train}}}}}"))
    return p


def test_task_overrides_go_on_top_of_finetune(tmp_path):
    p = with_t3_train(tmp_path, "lr: 0.5, pooling: mean", extra="finetune: {lr: 0.002, batch_size: 8}")
    cfg = load_config(p)
    t1, t2, t3 = (cfg.train_for(i, t.name) for i, t in enumerate(cfg.tasks))
    assert (t1.lr, t1.batch_size, t1.pooling) == (0.01, 16, "last")
    assert (t2.lr, t2.batch_size, t2.pooling) == (0.002, 8, "last")
    assert (t3.lr, t3.batch_size, t3.pooling) == (0.5, 8, "mean")
    # position, not name, says whether finetune applies: T3 learned first gets train + its own only
    first = cfg.train_for(0, "T3")
    assert (first.lr, first.batch_size) == (0.5, 16)


def test_task_overrides_are_not_data(tmp_path):
    """Changing a task's training settings must not re-prepare the stream."""
    plain = load_config(synthetic_config(tmp_path))
    tuned = load_config(with_t3_train(tmp_path, "input_length: 30, monitor: log_loss"))
    assert stream_key(plain) == stream_key(tuned)
    assert "train" not in plain.tasks[2].model_dump()  # configs dumped before the option stay equal


def test_bad_task_overrides_name_the_task_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown train fields \['lrate'\]"):
        load_config(with_t3_train(tmp_path, "lrate: 0.1"))
    with pytest.raises(ConfigError, match=r"(?s)tasks.*train.*lr.*greater than 0"):
        load_config(with_t3_train(tmp_path, "lr: -1"))
    with pytest.raises(ConfigError, match="input_length 40 is more than SASRec's model.max_length"):
        load_config(with_t3_train(tmp_path, "input_length: 40", backbone="sasrec"))


def test_input_length_sets_the_window_and_is_served(tmp_path):
    """A profile task reading 30 items (the item tasks read 12): its windows hold the last 30 items, the
    adapter records it, and the predictor given the whole history reproduces the run's test accuracy."""
    cfg = load_config(with_t3_train(tmp_path, "input_length: 30, pooling: mean"), ["train.epochs=2"])
    run_stream(cfg, "finesmax", tmp_path / "run", log=lambda *_: None)
    stream, _ = open_stream(cfg)
    td = stream.task("T3")
    assert (np.diff(stream.offsets)[td.user] > 12).any()  # some histories are longer than the item window
    m = after_t1("finesmax", cfg, stream)
    obj = objective_for(
        stream,
        "T3",
        m.before_task(TaskInfo("T3", "classify", 1)),
        cfg.model_copy(update={"train": cfg.train_for(1, "T3")}),
    )
    assert obj.train_w.shape[1] == 30
    adapters = tmp_path / "run" / "adapters"
    assert json.loads((adapters / "T3" / "adapter_config.json").read_text())["max_length"] == 30
    assert json.loads((adapters / "T2" / "adapter_config.json").read_text())["max_length"] == 12
    p = Predictor(tmp_path / "run")
    test = td.split == TEST
    right = 0
    for u, end, t in zip(td.user[test], td.end[test], td.target[test]):
        hist = [stream.items[i] for i in stream.seq_items[stream.offsets[u] : stream.offsets[u] + end]]
        probs = p.classify("T3", hist)["probabilities"]
        scores = np.array([probs[c] for c in td.classes])
        right += int((scores >= scores[t]).sum() == 1)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert right / test.sum() == pytest.approx(rows[-1]["test_after"]["T3"]["accuracy"], abs=1e-9)


def test_better_direction():
    assert _better(0.2, None) and _better(0.2, 0.1) and not _better(0.1, 0.2)
    assert _better(0.1, 0.2, lower=True) and not _better(0.2, 0.1, lower=True)
    assert not _better(float("nan"), 0.1, lower=True)


def test_log_loss_monitor_keeps_the_lowest_validation_loss(tmp_path):
    cfg = load_config(with_t3_train(tmp_path, "monitor: log_loss, epochs: 6, patience: 6, lr: 0.05"))
    run_stream(cfg, "stl", tmp_path / "run", log=lambda *_: None)
    hist = [
        json.loads(x)
        for x in (tmp_path / "run" / "tasks" / "T3" / "train" / "metrics.jsonl").read_text().split("\n")
        if x
    ]
    losses = [h["valid"]["log_loss"] for h in hist]
    best = int(np.argmin(losses))
    assert [h["improved"] for h in hist][best] and not any(h["improved"] for h in hist[best + 1 :])
    # log_loss is the mean cross-entropy of the validation users
    stream, _ = open_stream(cfg)
    m = after_t1("stl", cfg, stream)
    net = m.before_task(TaskInfo("T3", "classify", 1))
    obj = objective_for(stream, "T3", net, cfg.model_copy(update={"train": cfg.train_for(1, "T3")}))
    with torch.no_grad():
        got = obj.evaluate(VALID)
        es = obj.eval_sets[VALID]
        want = F.cross_entropy(net.head(obj.user_vectors(es.windows[:])), torch.from_numpy(es.targets))
    assert got["log_loss"] == pytest.approx(float(want), rel=1e-5)
    assert obj.monitor == "log_loss"
    assert type(obj).report_metric(cfg.train) == "accuracy"


def test_item_tasks_refuse_the_log_loss_monitor(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), ["train.monitor=log_loss"])
    with pytest.raises(ConfigError, match="task T1: monitor log_loss is for profile tasks"):
        run_stream(cfg, "stl", tmp_path / "run", log=lambda *_: None)


def test_a_log_prior_head_starts_at_popularity_and_the_majority(tmp_path):
    """train.head_bias: log_prior starts an item head's bias at the log frequency of the task's training
    targets (so its order is the most popular items') and a class head at the majority class; the
    default leaves the bias at zero, and the config's dump omits the default."""
    import numpy as np
    import torch
    from synthetic import synthetic_config

    from lifelongrec.config import load_config
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TRAIN
    from lifelongrec.objectives import new_head

    cfg = load_config(synthetic_config(tmp_path))
    stream, _ = open_stream(cfg)
    assert "head_bias" not in cfg.train.model_dump()
    assert float(new_head(stream, "T2", 16).bias.detach().abs().sum()) == 0.0
    td = stream.task("T2")
    counts = np.bincount(td.target[td.split == TRAIN], minlength=stream.n_items + 1)
    bias = new_head(stream, "T2", 16, "log_prior").bias.detach().numpy()
    assert np.allclose(np.exp(bias[1:]) * (counts[1:] + 1).sum(), counts[1:] + 1)
    t3 = stream.task("T3")
    head = new_head(stream, "T3", 16, "log_prior")
    majority = int(np.bincount(t3.target[t3.split == TRAIN]).argmax())
    assert int(head.linear.bias.argmax()) == majority
    with torch.no_grad():
        head.linear.weight.zero_()
        assert (head(torch.randn(5, 16)).argmax(1) == majority).all()  # a zero user vector: the majority


def test_next_item_tasks_read_the_last_state_whatever_the_pooling(tmp_path):
    """train.pooling=mean set for the whole stream changes the user vector of item and profile tasks,
    not of T1: a next_item task is trained at every position, so it predicts from the last state (a
    pretrained T1 evaluated mean-pooled read 0.0039 instead of 0.0221 on ML-100K)."""
    import torch
    from synthetic import synthetic_config

    from lifelongrec.config import load_config
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.objectives import objective_for
    from lifelongrec.pretrain import build_t1, t1_net
    from lifelongrec.tasknet import head_input

    cfg = load_config(synthetic_config(tmp_path), ["train.pooling=mean"])
    stream, _ = open_stream(cfg)
    net = t1_net(*build_t1(cfg, stream))
    obj = objective_for(stream, "T1", net, cfg)
    w = obj.eval_sets[2].windows[:8]
    with torch.no_grad():
        got = obj.user_vectors(w)
        ids = {"items": torch.as_tensor(w)}
        assert torch.equal(got, head_input(net.encoder, ids, "last"))
        assert not torch.allclose(got, head_input(net.encoder, ids, "mean"))


def test_packed_batches_hold_whole_users_up_to_the_batch_size():
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lifelongrec.data.batches import packed_batches

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.integers(1, 50), st.integers(0, 9))
    def check(counts, batch_size, seed):
        counts = np.array(counts)
        batches = packed_batches(counts, batch_size, np.random.default_rng(seed))
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(counts)))  # each user once
        for b, nxt in zip(batches, [*batches[1:], None]):
            held = counts[b].sum()
            assert held <= batch_size or len(b) == 1  # over the size only as a single large user
            if nxt is not None:  # full: the next user would not have fitted
                assert held + counts[nxt[0]] > batch_size

    check()


def test_item_batches_by_targets_cover_every_training_pair_once(tmp_path):
    """train.item_batch=targets: an epoch's batches hold each training (user, target) pair once, about
    batch_size targets each, so there are more steps than with batches of batch_size users."""
    import numpy as np
    from synthetic import synthetic_config

    from lifelongrec.config import load_config
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TRAIN
    from lifelongrec.objectives import objective_for
    from lifelongrec.pretrain import build_t1, t1_net

    base = (
        synthetic_config(tmp_path)
        .read_text()
        .replace("filter: {column: rating, eq: 4}}", "filter: {column: rating, min: 3}}")
    )  # every rated item is a T2 target: ~12 per user
    (tmp_path / "many.yaml").write_text(base)
    counts = {}
    for unit in ("users", "targets"):
        cfg = load_config(tmp_path / "many.yaml", [f"train.item_batch={unit}"])
        stream, _ = open_stream(cfg)
        obj = objective_for(stream, "T2", t1_net(*build_t1(cfg, stream)), cfg)
        batches = list(obj.train_batches(np.random.default_rng(0), 16))
        counts[unit] = len(batches)
        pairs = sorted(
            (int(b["row"][r]), int(t)) for b in batches for r, t in zip(b["target_row"].tolist(), b["target"].tolist())
        )
        off, tt = obj.t_off, obj.train_t
        truth = sorted((r, int(t)) for r in range(len(off) - 1) for t in tt[off[r] : off[r + 1]])
        assert pairs == truth and len(truth) == int((stream.task("T2").split == TRAIN).sum())
        if unit == "targets":
            assert all(len(b["target"]) <= 16 or len(b["row"]) == 1 for b in batches)
            assert obj.n_batches(16) == len(batches)  # the same packing (n_batches draws with seed 0)
    assert counts["targets"] > 4 * counts["users"]


def test_cold_items_leave_training_only(tmp_path):
    """tasks[i].cold_items: half of T2's target items never appear as training targets; validation and
    test are the plain stream's, example for example; the plain config's data key is unchanged."""
    import numpy as np
    import pytest
    from synthetic import synthetic_config

    from lifelongrec.config import load_config
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TRAIN, stream_key
    from lifelongrec.errors import ConfigError

    path = synthetic_config(tmp_path)
    plain_cfg = load_config(path)
    cold_cfg = load_config(path, ["tasks[1].cold_items=0.5"])
    assert "cold_items" not in plain_cfg.tasks[1].model_dump() and stream_key(plain_cfg) != stream_key(cold_cfg)
    plain, _ = open_stream(plain_cfg)
    cold, _ = open_stream(cold_cfg)
    a, b = plain.task("T2"), cold.task("T2")
    items = np.unique(a.target)
    trained = np.unique(b.target[b.split == TRAIN])
    assert len(trained) <= len(items) - round(0.5 * len(items))
    for s in (1, 2):
        for f in ("user", "end", "target"):
            assert (getattr(a, f)[a.split == s] == getattr(b, f)[b.split == s]).all()
    assert np.isin(b.target[b.split == 2], trained, invert=True).any()  # some test targets are cold
    with pytest.raises(ConfigError, match="cold_items is for item_rec"):
        load_config(path, ["tasks[2].cold_items=0.5"])
