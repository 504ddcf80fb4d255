"""Building a stream a block of users at a time (data/blocks.py, data/build.py) gives the stream that
building it from the whole store in memory gives, array for array, whatever the block size: blocks of
one event (every user spans several reads), a few users, and the whole store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lifelongrec.config import load_config
from lifelongrec.data.blocks import read_blocks
from lifelongrec.data.build import build_stream, filter_columns
from lifelongrec.data.sources import cache_root
from lifelongrec.data.store import ensure_store, load_store
from lifelongrec.data.stream import Stream


def _log(folder: Path, n_users: int = 60, seed: int = 3) -> tuple[Path, Path]:
    """Users of 1-25 events over 40 items with a skewed popularity (rare items for min_item_count),
    ratings 1-5 (a few missing), and a gender each; a few users with no events in the log at all have a profile."""
    rng = np.random.default_rng(seed)
    rows, users = ["user_id,item_id,timestamp,rating"], ["user_id,gender"]
    for u in range(n_users):
        for t in range(int(rng.integers(1, 26))):
            item = min(int(rng.zipf(1.6)), 40)
            rating = int(rng.integers(1, 6)) if rng.random() > 0.05 else ""  # a few missing values
            rows.append(f"u{u},i{item},{t},{rating}")
        users.append(f"u{u},{'MF'[u % 2]}")
    users += ["x1,M", "x2,F"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    (folder / "users.csv").write_text("\n".join(users) + "\n")
    return folder / "log.csv", folder / "users.csv"


def _config(folder: Path, log: Path, users: Path, sequence: str, extra_tasks: str = "") -> Path:
    text = f"""
name: blocks
source:
  path: {log}
  format: csv
  columns: {{rating: rating}}
  profiles: {{path: {users}, format: csv}}
sequence: {sequence}
split: {{seed: 5, fractions: [0.6, 0.2, 0.2]}}
tasks:
  - {{name: T1, kind: next_item}}
  - {{name: T2, kind: item_rec, filter: {{column: rating, eq: 4}}}}
  - {{name: T3, kind: item_rec, filter: [{{column: rating, min: 4}}, {{column: position, gt: 0.5}}], first_per_user: 2}}
  - {{name: T4, kind: item_rec, filter: {{column: rating, eq: 5}}, last_per_user: 1, cold_items: 0.3}}
  - {{name: T5, kind: classify, label: gender}}
{extra_tasks}
model: {{name: nextitnet, d: 8, dilations: [1], max_length: 6}}
"""
    p = folder / "blocks.yaml"
    p.write_text(text)
    return p


def _same(a: Stream, b: Stream) -> None:
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.seq_items, b.seq_items)
    assert a.users.tolist() == b.users.tolist() and a.items.tolist() == b.items.tolist()
    assert list(a.tasks) == list(b.tasks)
    for name, ta in a.tasks.items():
        tb = b.tasks[name]
        for field in ("user", "end", "target", "split"):
            np.testing.assert_array_equal(getattr(ta, field), getattr(tb, field), err_msg=f"{name}.{field}")
        assert ta.classes == tb.classes
        assert (ta.items is None) == (tb.items is None)
        if ta.items is not None:
            assert ta.items.tolist() == tb.items.tolist()
    drop = {"build_seconds"}
    assert {k: v for k, v in a.manifest.items() if k not in drop} == {
        k: v for k, v in b.manifest.items() if k not in drop
    }


@pytest.mark.parametrize(
    ("sequence", "extra"),
    [
        ("{filter: {column: rating, max: 3}, min_length: 3, max_length: 6}", ""),
        # rare items dropped (a fixed point over several passes) and a task with its own catalogue
        (
            "{filter: {column: rating, max: 3}, min_length: 2, max_length: 6, min_item_count: 4}",
            "  - {name: T6, kind: item_rec, filter: {column: rating, eq: 5}, own_items: true}",
        ),
        ("{filter: {column: position, lt: 0.7}, min_length: 3, max_length: 6}", ""),
    ],
)
def test_blockwise_build_equals_the_build_in_memory(tmp_path: Path, sequence: str, extra: str) -> None:
    log, users = _log(tmp_path / "data")
    cfg = load_config(_config(tmp_path, log, users, sequence, extra))
    store_dir = ensure_store(cfg.source, cache_root())
    values = filter_columns(cfg)
    whole = build_stream(cfg, load_store(store_dir, values=values, timestamps=False))
    assert whole.tasks["T4"].size(0) > 0 and whole.tasks["T3"].size(0) > 0  # the tasks are not empty
    header = load_store(store_dir, values=values, timestamps=False, events=False)
    assert len(header.item_seq) == 0 and header.n_events == whole.manifest["source"]["events"]
    for max_events in (1, 17, 200, 10**9):
        seq = tmp_path / f"seq-{max_events}.npy"
        blocks = read_blocks(store_dir, header, values, max_events)
        n_blocks = sum(1 for _ in blocks())
        assert n_blocks >= 1 if max_events > 10**6 else n_blocks > 1
        _same(whole, build_stream(cfg, header, blocks, seq))
        assert isinstance(np.load(seq, mmap_mode="r"), np.memmap)


def test_blocks_end_on_user_boundaries(tmp_path: Path) -> None:
    """Every block holds whole users: their events, in order, and together every event once."""
    log, users = _log(tmp_path / "data", n_users=30)
    cfg = load_config(_config(tmp_path, log, users, "{min_length: 1, max_length: 6}"))
    store_dir = ensure_store(cfg.source, cache_root())
    store = load_store(store_dir, values=["rating"], timestamps=False)
    header = load_store(store_dir, values=["rating"], timestamps=False, events=False)
    for max_events in (1, 9, 50):
        seen_users, items, ratings = 0, [], []
        for first, b in read_blocks(store_dir, header, ["rating"], max_events)():
            assert first == seen_users
            np.testing.assert_array_equal(b.lengths(), store.lengths()[first : first + b.n_users])
            seen_users += b.n_users
            items.append(b.item_seq)
            ratings.append(b.values["rating"])
        assert seen_users == store.n_users
        np.testing.assert_array_equal(np.concatenate(items), store.item_seq)
        np.testing.assert_array_equal(np.concatenate(ratings), store.values["rating"])
