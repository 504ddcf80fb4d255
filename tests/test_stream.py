"""The task stream built from small synthetic files: exact sequences, targets, labels and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import stream_yaml, write

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream, prepare
from lifelongrec.data.stream import TEST, TRAIN, VALID, load_stream
from lifelongrec.errors import ConfigError, DataError


def _seqs(stream) -> dict[str, list[str]]:
    return {
        u: [stream.items[i] for i in stream.seq_items[stream.offsets[k] : stream.offsets[k + 1]]]
        for k, u in enumerate(stream.users)
    }


def test_sequences_are_chronological_with_ties_in_file_order(tmp_path, ratings_csv, users_csv):
    stream, _ = prepare(load_config(stream_yaml(tmp_path, ratings_csv, users_csv)), tmp_path / "out")
    # u1: b and c share timestamp 5; b comes first in the file, so it comes first here.
    assert _seqs(stream) == {
        "u1": ["b", "c", "a", "f", "g"],
        "u2": ["a", "b", "c", "d", "e"],
        "u3": ["c", "d", "e", "f", "g"],
        "u4": ["g", "f", "e", "d", "c"],
        "u5": ["e", "d", "c", "a", "b"],
    }
    assert stream.manifest["users_dropped_short"] == 1  # u6 has 2 events rated <= 3, fewer than min_length 4
    assert list(stream.items) == ["", "a", "b", "c", "d", "e", "f", "g"]


def test_item_task_targets_and_class_labels(tmp_path, ratings_csv, users_csv):
    stream, _ = prepare(load_config(stream_yaml(tmp_path, ratings_csv, users_csv)), tmp_path / "out")
    t2 = stream.task("T2")
    got = sorted((stream.users[u], stream.items[t]) for u, t in zip(t2.user, t2.target))
    assert got == [("u1", "d"), ("u1", "e"), ("u2", "f"), ("u3", "a"), ("u4", "a"), ("u4", "b"), ("u5", "f")]
    assert (t2.end == 5).all()  # item tasks read the whole input sequence
    t3 = stream.task("T3")
    assert t3.classes == ["F", "M"]
    assert {stream.users[u]: t3.classes[c] for u, c in zip(t3.user, t3.target)} == {
        "u1": "M",
        "u2": "F",
        "u3": "M",
        "u4": "F",
        "u5": "M",
    }
    t4 = stream.task("T4")
    assert t4.classes == ["<20", "[20,30)", ">=30"]
    assert {stream.users[u]: int(c) for u, c in zip(t4.user, t4.target)} == {
        "u1": 1,
        "u2": 0,
        "u3": 2,
        "u4": 1,
        "u5": 2,
    }
    assert stream.manifest["source"]["profile_users_without_events"] == 1  # u9


def test_next_item_split_by_user_holds_out_last_item(tmp_path, ratings_csv, users_csv):
    stream, _ = prepare(load_config(stream_yaml(tmp_path, ratings_csv, users_csv)), tmp_path / "out")
    t1 = stream.task("T1")
    assert [t1.size(s) for s in (TRAIN, VALID, TEST)] == [3, 1, 1]
    lengths = stream.lengths()
    for u, end, target, split in zip(t1.user, t1.end, t1.target, t1.split):
        last = stream.seq_items[stream.offsets[u + 1] - 1]
        if split == TRAIN:
            assert end == lengths[u] and target == -1
        else:
            assert end == lengths[u] - 1 and target == last


def test_leave_last_split(tmp_path, ratings_csv, users_csv):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["tasks.0.split={mode: leave_last}"])
    stream, _ = prepare(cfg, tmp_path / "out")
    t1 = stream.task("T1")
    for s, cut, pos in ((TRAIN, 2, None), (VALID, 2, 2), (TEST, 1, 1)):
        m = t1.split == s
        assert m.sum() == 5
        assert (t1.end[m] == stream.lengths()[t1.user[m]] - cut).all()
        if pos is not None:
            assert (t1.target[m] == stream.seq_items[stream.offsets[t1.user[m] + 1] - pos]).all()


def test_split_is_deterministic_and_depends_on_seed(tmp_path, ratings_csv, users_csv):
    path = stream_yaml(tmp_path, ratings_csv, users_csv)
    a, _ = prepare(load_config(path), tmp_path / "a")
    b, _ = prepare(load_config(path), tmp_path / "b")
    for name in a.tasks:
        assert np.array_equal(a.tasks[name].split, b.tasks[name].split)
    c, _ = prepare(load_config(path, ["split.seed=8"]), tmp_path / "c")
    assert any(not np.array_equal(a.tasks[n].split, c.tasks[n].split) for n in a.tasks)


def test_split_fractions_on_a_larger_task(tmp_path):
    from lifelongrec.config import SplitConfig
    from lifelongrec.data.build import _assign

    s = _assign(10_000, SplitConfig(seed=1, fractions=(0.8, 0.05, 0.15)), "T2")
    assert np.bincount(s).tolist() == [8000, 500, 1500]


def test_prepared_stream_round_trips(tmp_path, ratings_csv, users_csv):
    stream, out = prepare(load_config(stream_yaml(tmp_path, ratings_csv, users_csv)), tmp_path / "out")
    back = load_stream(out)
    assert back.manifest["files"]  # every file hashed in the manifest
    assert np.array_equal(back.seq_items, stream.seq_items)
    for name, td in stream.tasks.items():
        for f in ("user", "end", "target", "split"):
            assert np.array_equal(getattr(back.tasks[name], f), getattr(td, f))
    assert back.tasks["T3"].classes == ["F", "M"]


def test_open_stream_caches_prepared_data(tmp_path, ratings_csv, users_csv):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv))
    _, first = open_stream(cfg)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    _, second = open_stream(cfg)
    assert first == second and (second / "manifest.json").stat().st_mtime_ns == stamp


def test_min_length_too_small_for_split(tmp_path, ratings_csv, users_csv):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["sequence.min_length=1"])
    with pytest.raises(ConfigError, match="min_length >= 2"):
        prepare(cfg, tmp_path / "out")


def test_unknown_labels_are_skipped(tmp_path, ratings_csv):

    users = write(tmp_path / "u.csv", "user_id,gender,age\nu1,0,0\nu2,F,18\nu3,M,35\nu4,F,25\nu5,M,56\n")
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users), ["source.unknown_labels=[0]"])
    stream, _ = prepare(cfg, tmp_path / "out")
    assert "u1" not in {stream.users[u] for u in stream.task("T3").user}
    assert stream.manifest["tasks"]["T3"]["users_without_label"] == 1


def test_builtin_configs_validate():
    for name in ("ml1m", "ml100k"):
        cfg = load_config(name)
        assert [t.name for t in cfg.tasks] == ["T1", "T2", "T3", "T4", "T5", "T6"]
    assert load_config("ml1m", ["train.epochs=1"]).train.epochs == 1
    from lifelongrec.config import builtin_config_names
    from lifelongrec.tabular.config import load_tabular_config

    for name in builtin_config_names():  # every shipped config loads (sources are not opened here)
        if name == "adult":
            assert load_tabular_config(name).new_tasks == ["education"]
            with pytest.raises(ConfigError, match="tabular multi-task config"):
                load_config(name)
        else:
            assert load_config(name).tasks[0].kind == "next_item"


@pytest.mark.parametrize(
    "override, message",
    [
        (["train.epochs=0"], "train.epochs"),
        (["split.fractions=[0.5, 0.5, 0.5]"], "sum to 1"),
        (["tasks.1.kind=nope"], "tasks.1.kind"),
        (["train.epochs"], "KEY=VALUE"),
        (["tasks.9.name=x"], "not an index"),
        (["tasks[9].name=x"], "not an index"),
    ],
)
def test_config_errors_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("ml1m", override)


def test_list_items_can_be_set_with_brackets():
    """`tasks[1].train=...` (how a YAML path is usually written) is `tasks.1.train=...`; before, it made
    a top-level key "tasks[1]" that validation rejected as an unknown task field."""
    dotted = load_config("ml1m", ["tasks.1.train={input_length: 300}", "tasks.0.split={mode: leave_last}"])
    bracket = load_config("ml1m", ["tasks[1].train={input_length: 300}", "tasks[0].split={mode: leave_last}"])
    assert bracket == dotted and bracket.tasks[1].train == {"input_length": 300}
    assert bracket.tasks[0].split is not None and bracket.tasks[0].split.mode == "leave_last"


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="built-in"):
        load_config("no-such-config")


def test_relative_paths_resolve_against_config(tmp_path: Path, ratings_csv, users_csv):
    text = stream_yaml(tmp_path, ratings_csv, users_csv).read_text()
    text = text.replace(str(ratings_csv), "ratings.csv").replace(str(users_csv), "users.csv")
    (tmp_path / "rel.yaml").write_text(text)
    cfg = load_config(tmp_path / "rel.yaml")
    assert Path(cfg.source.path) == ratings_csv.resolve()


def test_rare_items_leave_catalogue_sequences_and_targets(tmp_path, ratings_csv, users_csv):
    # Events per item over every behaviour: g has 3 (u1, u3, u4), every other item >= 5 among u1..u5.
    # min_item_count 4 drops g; u1, u3 and u4 keep exactly min_length 4 input events, so nobody else goes.
    base = load_config(stream_yaml(tmp_path, ratings_csv, users_csv))
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["sequence.min_item_count=4"])
    stream, _ = prepare(cfg, tmp_path / "out")
    assert list(stream.items) == ["", "a", "b", "c", "d", "e", "f"]
    assert stream.manifest["items"] == 6 and stream.manifest["items_dropped_rare"] == 1
    assert _seqs(stream) == {
        "u1": ["b", "c", "a", "f"],
        "u2": ["a", "b", "c", "d", "e"],
        "u3": ["c", "d", "e", "f"],
        "u4": ["f", "e", "d", "c"],
        "u5": ["e", "d", "c", "a", "b"],
    }
    t2 = stream.task("T2")
    got = sorted((stream.users[u], stream.items[t]) for u, t in zip(t2.user, t2.target))
    assert got == [("u1", "d"), ("u1", "e"), ("u2", "f"), ("u3", "a"), ("u4", "a"), ("u4", "b"), ("u5", "f")]
    full, _ = prepare(base, tmp_path / "full")
    assert stream.manifest["vocab_hash"] != full.manifest["vocab_hash"]  # a different catalogue, by hash


def test_rare_item_filter_repeats_until_stable(tmp_path, ratings_csv, users_csv):
    # min_item_count 5 drops b and g; u1 falls below 4 input events, which takes a below 5, which
    # takes u2 and u5 below 4, and so on until no user is left: a clear error, not an empty stream.
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["sequence.min_item_count=5"])
    with pytest.raises(Exception, match="(?i)no user|empty|min_length"):
        prepare(cfg, tmp_path / "out")


def _binary(tmp_path, ratings_csv, users_csv, label: str, overrides: list[str] | None = None):
    extra = f"  - {{name: T5, kind: binary, label: {label}}}"
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv, extra), overrides)
    return prepare(cfg, tmp_path / "out")


def test_binary_task_with_a_positive_value(tmp_path, ratings_csv, users_csv):
    from lifelongrec.data.stats import format_stream_stats, stream_stats

    stream, out = _binary(tmp_path, ratings_csv, users_csv, "{field: gender, positive: F}")
    t5 = stream.task("T5")
    assert t5.kind == "binary" and t5.classes == ["M", "F"]  # [negative, positive]: target 1 = F
    assert {stream.users[u]: int(c) for u, c in zip(t5.user, t5.target)} == {
        "u1": 0,
        "u2": 1,
        "u3": 0,
        "u4": 1,
        "u5": 0,
    }
    # Same users and ends as the classify task on the same field; the split is the task's own.
    t3 = stream.task("T3")
    assert np.array_equal(t5.user, t3.user) and np.array_equal(t5.end, t3.end)
    assert stream.manifest["tasks"]["T5"]["kind"] == "binary"
    assert stream.manifest["tasks"]["T5"]["classes"] == ["M", "F"]
    back = load_stream(out).task("T5")
    assert back.kind == "binary" and back.classes == ["M", "F"]
    assert np.array_equal(back.target, t5.target) and np.array_equal(back.split, t5.split)
    s = stream_stats(stream)["tasks"]["T5"]
    assert s["classes"] == {"M": 3, "F": 2} and s["positive"] == "F" and s["positive_rate"] == 0.4
    assert "positive 'F' 40.0%" in format_stream_stats(stream_stats(stream))


def test_binary_task_defaults_to_the_second_value_in_class_order(tmp_path, ratings_csv, users_csv):
    stream, _ = _binary(tmp_path, ratings_csv, users_csv, "gender")
    t5 = stream.task("T5")
    assert t5.classes == ["F", "M"]  # sorted as classify sorts: M is the positive class
    assert {stream.users[u]: int(c) for u, c in zip(t5.user, t5.target)}["u1"] == 1


def test_binary_task_with_declared_classes_and_bins(tmp_path, ratings_csv, users_csv):
    stream, _ = _binary(tmp_path, ratings_csv, users_csv, "{field: gender, classes: [M, F]}")
    assert stream.task("T5").classes == ["M", "F"]
    # Ages 25, 18, 35, 25, 56 in two bins; the positive class is named like the bin.
    stream, _ = _binary(tmp_path, ratings_csv, users_csv, "{field: age, bins: [30], positive: '<30'}")
    t5 = stream.task("T5")
    assert t5.classes == [">=30", "<30"]
    assert {stream.users[u]: int(c) for u, c in zip(t5.user, t5.target)} == {
        "u1": 1,
        "u2": 1,
        "u3": 0,
        "u4": 1,
        "u5": 0,
    }


def test_binary_task_skips_unknown_labels(tmp_path, ratings_csv):

    users = write(tmp_path / "u.csv", "user_id,gender,age\nu1,0,0\nu2,F,18\nu3,M,35\nu4,F,25\nu5,M,56\n")
    stream, _ = _binary(tmp_path, ratings_csv, users, "{field: gender, positive: F}", ["source.unknown_labels=[0]"])
    assert "u1" not in {stream.users[u] for u in stream.task("T5").user}
    assert stream.task("T5").classes == ["M", "F"]
    assert stream.manifest["tasks"]["T5"]["users_without_label"] == 1


@pytest.mark.parametrize(
    "label, message",
    [
        # Three age bins are all present: the error names the task, the field and every value found.
        ("{field: age, bins: [20, 30]}", r"field 'age'.*task T5.*found 3: '<20' \(1 user\), '\[20,30\)' \(2"),
        ("age", r"task T5.*found 4: '18'.*'25'.*'35'.*'56'"),
        ("{field: gender, positive: X}", r"field 'gender'.*task T5: label.positive 'X' is not a value.*'F'.*'M'"),
    ],
)
def test_binary_task_needs_exactly_two_values(tmp_path, ratings_csv, users_csv, label, message):
    with pytest.raises(DataError, match=message):
        _binary(tmp_path, ratings_csv, users_csv, label)


def test_binary_task_with_one_value_is_an_error(tmp_path, ratings_csv):

    users = write(tmp_path / "u.csv", "user_id,gender,age\nu1,F,1\nu2,F,18\nu3,F,35\nu4,F,25\nu5,F,56\n")
    with pytest.raises(DataError, match="found 1: 'F'"):
        _binary(tmp_path, ratings_csv, users, "gender")


@pytest.mark.parametrize(
    "label, message",
    [
        ("{field: gender, classes: [M, F, X]}", "exactly two label.classes"),
        ("{field: gender, classes: [M, F], positive: X}", "not one of label.classes"),
    ],
)
def test_binary_config_errors(tmp_path, ratings_csv, users_csv, label, message):
    with pytest.raises(ConfigError, match=message):
        _binary(tmp_path, ratings_csv, users_csv, label)


def test_positive_is_only_for_binary_tasks(tmp_path, ratings_csv, users_csv):
    path = stream_yaml(tmp_path, ratings_csv, users_csv)
    with pytest.raises(ConfigError, match="label.positive is for binary tasks"):
        load_config(path, ["tasks.2.label={field: gender, positive: F}"])


def test_position_cuts_each_timeline_and_first_per_user_keeps_the_next_targets(tmp_path, ratings_csv, users_csv):
    """`position` (i / n of the user's time-ordered events) splits a timeline into an input past and a
    target future; first_per_user keeps each user's earliest targets; gt/lt are strict bounds."""
    text = f"""
name: future
source:
  path: {ratings_csv}
  format: csv
  columns: {{user: user_id, item: item_id, timestamp: timestamp, rating: rating}}
  profiles: {{path: {users_csv}, format: csv, user: user_id}}
sequence: {{filter: {{column: position, lt: 0.5}}, min_length: 2, max_length: 10}}
split: {{seed: 7, fractions: [0.6, 0.2, 0.2]}}
tasks:
  - {{name: T1, kind: next_item}}
  - name: T2
    kind: item_rec
    filter: [{{column: position, min: 0.5}}, {{column: rating, min: 3}}]
    first_per_user: 1
  - {{name: T3, kind: item_rec, filter: {{column: rating, gt: 3, lt: 5}}}}
"""
    stream, _ = prepare(load_config(write(tmp_path / "future.yaml", text)), tmp_path / "out")
    assert _seqs(stream) == {
        "u1": ["b", "c", "a", "d"],
        "u2": ["a", "b", "c"],
        "u3": ["c", "d", "e"],
        "u4": ["g", "f", "e", "d"],
        "u5": ["f", "e", "d"],
        "u6": ["a", "b"],
    }
    t2 = stream.task("T2")
    got = sorted((stream.users[u], stream.items[t]) for u, t in zip(t2.user, t2.target))
    assert got == [("u1", "e"), ("u2", "d"), ("u3", "f"), ("u4", "b"), ("u6", "c")]  # u5's future is rated 1
    assert stream.manifest["tasks"]["T2"]["targets_also_in_input"] == 0  # the future is never read
    t3 = stream.task("T3")
    assert sorted((stream.users[u], stream.items[t]) for u, t in zip(t3.user, t3.target)) == [
        ("u1", "d"),
        ("u2", "f"),
        ("u4", "b"),
    ]


def test_an_unknown_filter_column_names_position_among_the_choices(tmp_path, ratings_csv, users_csv):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["sequence.filter.column=stars"])
    with pytest.raises(ConfigError, match="filter column 'stars'.*position"):
        prepare(cfg, tmp_path / "out")


def test_a_filter_without_strict_bounds_dumps_as_before_they_existed():
    """Runs and caches compare dumped configs: a new option at its default must not change them."""
    from lifelongrec.config import Filter

    assert Filter(max=3).model_dump(mode="json", by_alias=True) == {
        "column": "rating",
        "eq": None,
        "min": None,
        "max": 3.0,
        "in": None,
    }
    assert Filter(lt=0.8).model_dump(mode="json", by_alias=True)["lt"] == 0.8
