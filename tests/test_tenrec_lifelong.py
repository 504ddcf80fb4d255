"""Tenrec's lifelong benchmark files (task_0.csv ... task_3.csv), read as one stream whose later item
tasks rank a catalogue of their own; tested on small synthetic files in Tenrec's schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write

from lifelongrec.config import SourceConfig, load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.sources import cache_root
from lifelongrec.data.store import open_store
from lifelongrec.data.stream import load_stream
from lifelongrec.errors import ConfigError, DataError
from lifelongrec.predict import Predictor
from lifelongrec.references import reference_rows
from lifelongrec.runner import run_stream

QUIET = {"log": lambda *a, **k: None}
N_VIDEOS, N_ARTICLES = 20, 12


def write_lifelong(folder: Path, n_users: int = 90, seed: int = 0) -> Path:
    """task_0: video clicks walking a ring (with unclicked exposures); task_1: article clicks, the
    article being the last video mod 12 (ids overlapping the videos' on purpose); task_2: likes of
    videos of another scenario; task_3: a scenario without gender/age columns."""
    rng = np.random.default_rng(seed)
    t0 = ["user_id,item_id,click,video_category,gender,age"]
    t1 = ["user_id,item_id,click,follow,like,share,gender,age"]
    t2 = ["user_id,item_id,click,follow,like,share,video_category,gender,age"]
    t3 = ["user_id,item_id,click"]
    for u in range(n_users):
        start = int(rng.integers(1, N_VIDEOS + 1))
        gender, age = (1 + start % 2, int(rng.integers(0, 4)))
        items = [start]
        for _ in range(int(rng.integers(8, 14)) - 1):
            items.append(items[-1] % N_VIDEOS + 1 if rng.random() > 0.2 else int(rng.integers(1, N_VIDEOS + 1)))
        for it in items:
            t0.append(f"{u},{it},1,{it % 3},{gender},{age}")
            if rng.random() < 0.3:  # shown, not clicked
                t0.append(f"{u},{int(rng.integers(1, N_VIDEOS + 1))},0,0,{gender},{age}")
        for k in range(5):  # five article clicks, the last three of them the task's targets
            art = (items[-1] + k) % N_ARTICLES + 1
            t1.append(f"{u},{art},1,0,0,0,{gender},{age}")
        t2.append(f"{u},{items[-1]},1,0,{int(rng.random() < 0.7)},0,1,{gender},{age}")
        t3.append(f"{u},{start},1")
    folder.mkdir(parents=True, exist_ok=True)
    for k, rows in enumerate([t0, t1, t2, t3]):
        write(folder / f"task_{k}.csv", "\n".join(rows) + "\n")
    return folder


def config_text(folder: Path, extra: str = "") -> str:
    return f"""
name: tenrec_lifelong_synthetic
source: {{format: tenrec_lifelong, path: {folder}, unknown_labels: [0]}}
sequence:
  filter: [{{column: task, eq: 0}}, {{column: click, eq: 1}}]
  min_length: 5
  max_length: 12
split: {{seed: 1, fractions: [0.7, 0.15, 0.15]}}
tasks:
  - {{name: T1, kind: next_item}}
  - name: T2
    kind: item_rec
    filter: [{{column: task, eq: 1}}, {{column: click, eq: 1}}]
    own_items: true
    last_per_user: 3
  - {{name: T3, kind: item_rec, filter: [{{column: task, eq: 2}}, {{column: like, eq: 1}}], own_items: true}}
  - {{name: T4, kind: classify, label: gender}}
model: {{name: nextitnet, d: 16, dilations: [1, 2], max_length: 16}}
train: {{epochs: 3, batch_size: 16, lr: 0.01, patience: 10, seed: 0, threads: 1, ks: [1, 5]}}
{extra}
"""


def load(tmp_path: Path, extra: str = ""):
    folder = write_lifelong(tmp_path / "tenrec")
    p = tmp_path / "tenrec.yaml"
    p.write_text(config_text(folder, extra))
    return load_config(p)


def test_the_task_files_are_one_store_with_separate_catalogues(tmp_path):
    folder = write_lifelong(tmp_path / "tenrec")
    s = open_store(SourceConfig(path=str(folder), format="tenrec_lifelong"), cache_root())
    assert s.meta["values"][:2] == ["task", "click"] and "like" in s.values
    assert set(np.unique(s.values["task"]).tolist()) == {0, 1, 2, 3}
    items = set(s.items[1:].tolist())
    assert {"1", "task_1:1", "task_2:1"} <= items  # article 1 and video 1 are different items
    k = list(s.users).index("0")
    rows = slice(s.offsets[k], s.offsets[k + 1])
    task = s.values["task"][rows]
    assert (np.diff(task) >= 0).all()  # a user's events: task_0's in file order, then task_1's, ...
    assert np.isnan(s.values["like"][rows][task == 0]).all()  # task_0.csv has no `like` column
    assert s.labels["gender"][k] in ("1", "2")  # read from the first file that has it


def test_missing_or_bad_task_files_are_named(tmp_path):
    folder = write_lifelong(tmp_path / "tenrec")
    (folder / "task_1.csv").rename(folder / "task_9.csv")
    with pytest.raises(DataError, match="task_1.csv is missing"):
        open_store(SourceConfig(path=str(folder), format="tenrec_lifelong"), cache_root())
    (folder / "task_9.csv").rename(folder / "task_1.csv")
    lines = (folder / "task_2.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",1,0,", ",yes,0,", 1)
    (folder / "task_2.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"task_2\.csv.*row 3.*'yes' is not a number"):
        open_store(SourceConfig(path=str(folder), format="tenrec_lifelong"), cache_root())
    with pytest.raises(DataError, match="is a file, not a folder"):
        open_store(SourceConfig(path=str(folder / "task_0.csv"), format="tenrec_lifelong"), cache_root())


def test_own_catalogue_tasks(tmp_path):
    cfg = load(tmp_path)
    stream, path = open_stream(cfg)
    assert all(not str(x).startswith("task_") for x in stream.items[1:])  # articles stay out of the input
    t2, t3 = stream.task("T2"), stream.task("T3")
    assert t2.items is not None and len(t2.items) - 1 == N_ARTICLES == stream.n_targets("T2")
    assert all(str(x).startswith("task_1:") for x in t2.items[1:])
    assert np.bincount(t2.user).max() == 3  # each user's last 3 article clicks
    assert t3.items is not None and all(str(x).startswith("task_2:") for x in t3.items[1:])
    assert stream.n_targets("T1") == stream.n_items
    # The last three article clicks of user 0 (synthetic: last video + 2, + 3, + 4, mod 12, plus 1).
    k = list(stream.users).index("0")
    seq = [stream.items[i] for i in stream.seq_items[stream.offsets[k] : stream.offsets[k + 1]]]
    want = [f"task_1:{(int(seq[-1]) + j) % N_ARTICLES + 1}" for j in (2, 3, 4)]
    assert sorted(t2.items[t2.target[t2.user == k]].tolist()) == sorted(want)
    again = load_stream(path).task("T2")  # as saved in the prepared stream
    assert again.items is not None and again.items.tolist() == t2.items.tolist()
    assert again.target.tolist() == t2.target.tolist()


def test_own_catalogue_refuses_exclude_seen_and_a_first_task(tmp_path):
    with pytest.raises(ConfigError, match="own_items the input items are not its candidates"):
        load(tmp_path, "finetune: {exclude_seen: true}")
    folder = write_lifelong(tmp_path / "t2")
    text = config_text(folder).replace("  - {name: T1, kind: next_item}\n", "")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match="first task sets the input catalogue"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("method", ["stl", "pcl"])
def test_a_stream_learns_and_serves_the_task_catalogues(tmp_path, method):
    cfg = load(tmp_path)
    run = tmp_path / "run"
    s = run_stream(cfg, method, run, **QUIET)
    assert s["complete"]
    stream, _ = open_stream(cfg)
    refs = reference_rows(stream, cfg)
    assert set(refs["most_popular"]) == {"T1", "T2", "T3"}
    p = Predictor(run)
    hist = ["3", "4", "5", "6"]
    top = p.recommend("T2", hist, k=5)["items"]
    assert len(top) == 5 and all(x["item"].startswith("task_1:") for x in top)
    assert len(p.recommend("T2", hist, k=50)["items"]) == N_ARTICLES  # its catalogue, not the videos
    read = top[0]["item"]  # an article the user already read: excluded by its own id
    got = p.recommend("T2", [*hist, read], k=50, exclude_seen=True)
    assert read not in [x["item"] for x in got["items"]] and len(got["items"]) == N_ARTICLES - 1
    assert got["unknown_items"] == [read]  # not an input item, and said so
    assert p.recommend("T1", hist, k=3)["items"][0]["item"] in {str(i) for i in range(1, N_VIDEOS + 1)}
    assert (run / "adapters" / "T2" / "targets.parquet").is_file()
    assert not (run / "adapters" / "T4" / "targets.parquet").exists()
