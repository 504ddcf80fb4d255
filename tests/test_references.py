"""Reference rows (most popular items, majority class, bag-of-items logistic regression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import synthetic_config

from lifelongrec import references
from lifelongrec.config import StreamConfig, load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST, TRAIN, Stream, TaskData
from lifelongrec.metrics import ranks_full
from lifelongrec.references import (
    majority,
    most_popular,
    popularity_ranks,
    reference_rows,
    segments,
    training_item_counts,
)

EXTRA = {"item_rec": {"filter": {"column": "rating", "eq": 4}}, "binary": {"label": "gender"}}


def _hand_stream(task: TaskData, max_length: int = 50) -> tuple[Stream, StreamConfig]:
    """Five items; user 0 reads [1, 2], user 1 [3], user 2 [2, 4], user 3 [1, 2, 3, 4]."""
    cfg = StreamConfig.model_validate(
        {
            "name": "hand",
            "source": {"path": "unused.csv", "format": "csv"},
            "sequence": {"max_length": max_length},
            "tasks": [{"name": task.name, "kind": task.kind, **EXTRA.get(task.kind, {})}],
            "train": {"ks": [1, 5]},
        }
    )
    seq = np.array([1, 2, 3, 2, 4, 1, 2, 3, 4], dtype=np.int32)
    offsets = np.array([0, 2, 3, 5, 9], dtype=np.int64)
    items = np.array(["", "a", "b", "c", "d", "e"], dtype=object)
    users = np.array(["u0", "u1", "u2", "u3"], dtype=object)
    return Stream(cfg, users, items, offsets, seq, {task.name: task}, {}), cfg


def _i32(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int32)


def _item_task() -> TaskData:
    # Training targets 1, 1, 2, 2, 3, 5: counts 1->2, 2->2, 3->1, 4->0, 5->1 (a validation target of
    # item 4 must not count). Test: (user 0, reads [1, 2], target 1), (user 1, [3], 3), (user 2, [2, 4],
    # 4), (user 2, [2], 5).
    return TaskData(
        "R",
        "item_rec",
        user=_i32(0, 0, 1, 1, 2, 2, 0, 0, 1, 2, 2),
        end=_i32(2, 2, 1, 1, 2, 2, 2, 2, 1, 2, 1),
        target=_i32(1, 1, 2, 2, 3, 5, 4, 1, 3, 4, 5),
        split=np.array([0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2], dtype=np.int8),
    )


def test_most_popular_by_hand_with_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    stream, cfg = _hand_stream(_item_task())
    counts = training_item_counts(stream, stream.task("R"), cfg.train, 50)
    assert counts.tolist() == [0, 2, 2, 1, 0, 1]
    # 1 + the other items with a count >= the target's: item 1 ties with 2 (rank 2, not 1); item 3
    # ties with 5 behind 1 and 2 (rank 4); item 4 (count 0) is last (5); item 5 ties with 3 (rank 4).
    out = most_popular(stream, "R", cfg.train, 50)
    assert out["protocol"] == "full" and out["examples"] == 4
    assert out["HR@1"] == 0.0 and out["HR@5"] == 1.0
    assert out["MRR@5"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 5 + 1 / 4) / 4)
    assert set(out["ci95"]) == {f"{m}@{k}" for m in ("MRR", "NDCG", "HR") for k in (1, 5)}
    # exclude_seen: user 0 has seen 1 and 2 (rank 1); user 1 only its target (4); user 2 has seen 2 and
    # 4 (target 4: 4), then only 2 (target 5: 3).
    train = cfg.train.model_copy(update={"exclude_seen": True})
    for chunk in (8192, 1):  # seen items are gathered once per distinct input, so many inputs at a time
        monkeypatch.setattr(references, "CHUNK", chunk)
        out = most_popular(stream, "R", train, 50)
        assert out["protocol"] == "full-exclude-seen"
        assert out["HR@1"] == 0.25
        assert out["MRR@5"] == pytest.approx((1 + 1 / 4 + 1 / 4 + 1 / 3) / 4)


def test_popularity_ranks_match_ranks_full() -> None:
    rng = np.random.default_rng(0)
    counts = np.concatenate([[0], rng.integers(0, 4, 30)])  # many ties
    targets = rng.integers(1, 31, 200)
    inputs = rng.integers(0, 50, 200)  # 50 distinct inputs shared by 200 examples
    rows, items = np.repeat(np.arange(50), 6), rng.integers(1, 31, 300)  # duplicates included
    per_example = np.concatenate([np.flatnonzero(inputs == i) for i in rows])
    per_item = np.concatenate([np.full((inputs == i).sum(), it) for i, it in zip(rows, items)])
    zeros_u, zeros_i = torch.zeros(200, 1), torch.zeros(31, 1)
    bias, t = torch.from_numpy(counts).float(), torch.from_numpy(targets)
    want = ranks_full(zeros_u, zeros_i, t, bias=bias, chunk=7).numpy()
    assert (popularity_ranks(counts, targets) == want).all()
    ex = (torch.from_numpy(per_example), torch.from_numpy(per_item))
    want = ranks_full(zeros_u, zeros_i, t, bias=bias, exclude=ex, chunk=7).numpy()
    assert (popularity_ranks(counts, targets, (per_example, per_item)) == want).all()
    assert (popularity_ranks(counts, targets, (rows, items), inputs) == want).all()


def test_next_item_counts_follow_the_training_windows() -> None:
    # user 3 trains (reads [1, 2, 3, 4]); user 0 is the test user.
    td = TaskData("N", "next_item", _i32(3, 0), _i32(4, 1), _i32(-1, 2), np.array([0, 2], dtype=np.int8))
    stream, cfg = _hand_stream(td, max_length=2)
    last = training_item_counts(stream, td, cfg.train, 2)  # the last 2 targets: 3 and 4
    every = training_item_counts(stream, td, cfg.train.model_copy(update={"history": "all"}), 2)
    assert last.tolist() == [0, 0, 0, 1, 1, 0] and every.tolist() == [0, 0, 1, 1, 1, 0]


def test_majority_binary_is_auc_one_half() -> None:
    td = TaskData(
        "B",
        "binary",
        _i32(0, 1, 2, 3, 0, 1),
        _i32(2, 1, 2, 4, 2, 1),
        _i32(1, 1, 0, 1, 0, 1),
        np.array([0, 0, 0, 2, 2, 2], dtype=np.int8),
        ["n", "y"],
    )
    stream, _ = _hand_stream(td)
    out = majority(stream, "B")
    assert out == {"AUC": 0.5, "accuracy": pytest.approx(2 / 3), "protocol": "auc", "examples": 3, "class": "y"}


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Stream, StreamConfig]:
    path = synthetic_config(tmp_path)
    text = path.read_text().replace(
        "  - {name: T3, kind: classify, label: gender}",
        "  - {name: T3, kind: classify, label: gender}\n  - {name: T4, kind: binary, label: gender}",
    )
    path.write_text(text)
    cfg = load_config(path)
    return open_stream(cfg)[0], cfg


def test_reference_rows_on_the_synthetic_stream(synthetic: tuple[Stream, StreamConfig]) -> None:
    stream, cfg = synthetic
    rows = reference_rows(stream, cfg)
    assert {k: sorted(v) for k, v in rows.items()} == {
        "most_popular": ["T1", "T2"],
        "bag_of_items_ridge": ["T2"],
        "majority": ["T3", "T4"],
        "bag_of_items_logreg": ["T3", "T4"],
    }
    for task in ("T1", "T2"):
        m = rows["most_popular"][task]
        assert m["protocol"] == "full" and m["examples"] == stream.task(task).size(TEST)
        assert {"MRR@1", "MRR@5", "NDCG@5", "HR@5", "ci95"} <= set(m)
    for name in ("majority", "bag_of_items_logreg"):
        assert rows[name]["T3"]["protocol"] == "accuracy" and "accuracy" in rows[name]["T3"]
        assert rows[name]["T4"]["protocol"] == "auc" and {"AUC", "accuracy"} <= set(rows[name]["T4"])
    assert rows["bag_of_items_logreg"]["T3"]["C"] in (0.01, 0.1, 1.0, 10.0)

    # The majority is the training majority.
    td = stream.task("T3")
    k = int(np.bincount(td.target[td.split == TRAIN]).argmax())
    assert rows["majority"]["T3"]["class"] == td.classes[k]  # type: ignore[index]
    assert rows["majority"]["T3"]["accuracy"] == pytest.approx((td.target[td.split == TEST] == k).mean())
    assert rows["majority"]["T4"]["AUC"] == 0.5

    # Gender is the parity of the start item (the input's first item), so the task is learnable from the
    # input, and a linear model of the items read beats the majority.
    first = stream.items[stream.seq_items[stream.offsets[td.user]]]
    assert ([td.classes[c] for c in td.target] == np.where([int(i[1:]) % 2 for i in first], "M", "F")).all()  # type: ignore[index]
    assert rows["bag_of_items_logreg"]["T3"]["accuracy"] > rows["majority"]["T3"]["accuracy"]
    assert rows["bag_of_items_logreg"]["T4"]["AUC"] > 0.5


def test_next_item_counts_match_the_objective(synthetic: tuple[Stream, StreamConfig]) -> None:
    from lifelongrec.objectives import NextItemObjective

    stream, cfg = synthetic
    td = stream.task("T1")
    tr = td.split == TRAIN
    for history in ("last", "all"):
        train = cfg.train.model_copy(update={"history": history})
        obj = NextItemObjective.__new__(NextItemObjective)  # only its training-window builder
        obj.stream, obj.cfg = stream, cfg.model_copy(update={"train": train})
        L = cfg.sequence.max_length
        w = obj._train_examples(td.user[tr], td.end[tr], td.target[tr], L + 1)[0][:]  # built
        inp, tgt = w[:, :-1], w[:, 1:]
        want = np.bincount(tgt[(inp > 0) & (tgt > 0)], minlength=stream.n_items + 1)
        assert (training_item_counts(stream, td, train, L) == want).all()
    rows, items = segments(stream, td.user[:3], np.zeros(3), td.end[:3])
    assert len(rows) == td.end[:3].sum() and items.min() >= 1


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_ridge_reference_matches_a_direct_solve(
    synthetic: tuple[Stream, StreamConfig], monkeypatch: pytest.MonkeyPatch, exclude_seen: bool
) -> None:
    """The eigendecomposition route gives the ranks of W = (X'X + lambda I)^-1 X'Y solved directly and
    ranked by metrics.ranks_full (same ties, same excluded items)."""
    from lifelongrec.metrics import rank_metrics
    from lifelongrec.references import bag_of_items, bag_of_items_ridge

    stream, cfg = synthetic
    train = cfg.train.model_copy(update={"exclude_seen": exclude_seen})
    td, lam, window = stream.task("T2"), 10.0, 5
    monkeypatch.setattr(references, "RIDGE_LAMBDAS", (lam,))
    monkeypatch.setattr(references, "CHUNK", 7)  # several chunks of examples
    got = bag_of_items_ridge(stream, "T2", train, window)
    assert got is not None and got["lambda"] == lam and got["examples"] == stream.task("T2").size(TEST)

    def bag(mask: np.ndarray) -> np.ndarray:
        x = bag_of_items(stream, td.user[mask], td.end[mask], window).toarray()
        return np.hstack([x, np.ones((len(x), 1))])

    tr, te = td.split == TRAIN, td.split == TEST
    x = np.unique(np.column_stack([td.user[tr], td.end[tr]]), axis=0)  # one row per distinct input
    row = {(u, e): i for i, (u, e) in enumerate(x)}
    xb = bag(np.isin(np.arange(len(td.user)), [np.flatnonzero(tr & (td.user == u) & (td.end == e))[0] for u, e in x]))
    y = np.zeros((len(x), stream.n_items + 1))
    for u, e, t in zip(td.user[tr], td.end[tr], td.target[tr]):
        y[row[(u, e)], t] = 1.0
    w = np.linalg.solve(xb.T @ xb + lam * np.eye(xb.shape[1]), xb.T @ y)
    users = torch.from_numpy(bag(te)).float()
    items = torch.from_numpy(w.T).float()
    items[0] = 0.0
    bias = torch.zeros(stream.n_items + 1)
    bias[0] = -torch.inf  # padding is never a candidate
    seen = None
    if exclude_seen:
        rows, its = segments(stream, td.user[te], np.zeros(int(te.sum())), td.end[te])
        seen = (torch.from_numpy(rows), torch.from_numpy(its))
    ranks = ranks_full(users, items, torch.from_numpy(td.target[te].astype(np.int64)), bias=bias, exclude=seen)
    want = rank_metrics(ranks.numpy(), train.ks)
    for k in ("MRR@5", "HR@1", "HR@5"):
        assert got[k] == pytest.approx(want[k], abs=1e-9), k
    assert got["protocol"] == ("full-exclude-seen" if exclude_seen else "full")
