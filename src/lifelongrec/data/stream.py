"""From the store to a task stream: input sequences, per-task examples and their fixed splits.

Every task example is four numbers: the user, how much of the user's input sequence the model may
read (`end`: the prefix seq[:end]), the target (an item index, a class index, or -1 for "train on
every position of the prefix"), and the split (0 train, 1 valid, 2 test). One representation covers
next-item pretraining (split by user, or leave-last-out), item recommendation and classification, and
because the split is written to disk once, every method that ever runs on the stream sees the same one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Filter, SequenceConfig, SplitConfig, StreamConfig, TaskConfig
from ..errors import ConfigError, DataError
from ..fsutil import atomic_directory, sha256_bytes, sha256_file, write_json_atomic
from .labelfile import file_task_rows
from .labels import binary_labels, class_labels
from .store import InteractionStore, vocab_hash

FORMAT_VERSION = 1
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")
POSITION = "position"  # the filter column every store has: an event's place in its user's timeline


@dataclass
class TaskData:
    name: str
    kind: str
    user: np.ndarray  # int32, index into the stream's users
    end: np.ndarray  # int32, the model reads seq[:end]
    target: np.ndarray  # int32, item index (1..n), class index, or -1 (every position of the prefix)
    split: np.ndarray  # int8: 0 train, 1 valid, 2 test
    classes: list[str] | None = None  # classify; binary: [negative, positive], target 1 = positive
    # item_rec with own_items: the task's own catalogue (external ids, index 0 = padding) that `target`
    # indexes; None: targets index the stream's items.
    items: np.ndarray | None = None

    def size(self, split: int) -> int:
        return int((self.split == split).sum())


@dataclass
class Stream:
    """A prepared stream: shared input sequences plus tasks in order."""

    config: StreamConfig
    users: np.ndarray  # external user ids of the kept users
    items: np.ndarray  # external item ids, index 0 = padding
    offsets: np.ndarray  # int64 [n_users + 1], CSR into seq_items
    seq_items: np.ndarray  # int32, the input sequences (chronological)
    tasks: dict[str, TaskData]
    manifest: dict

    @property
    def n_items(self) -> int:
        return len(self.items) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def n_targets(self, name: str) -> int:
        """How many items an item task's head scores: its own catalogue's size, or the stream's."""
        td = self.task(name)
        return self.n_items if td.items is None else len(td.items) - 1

    def task(self, name: str) -> TaskData:
        if name not in self.tasks:
            raise ConfigError(f"unknown task '{name}' (this stream has: {', '.join(self.tasks)})")
        return self.tasks[name]


# --------------------------------------------------------------------------- building


def _mask(store: InteractionStore, f: Filter | list[Filter] | None) -> np.ndarray:
    if f is None:
        return np.ones(store.n_events, dtype=bool)
    if isinstance(f, list):  # every filter of the list must pass
        m = np.ones(store.n_events, dtype=bool)
        for one in f:
            m &= _mask(store, one)
        return m
    if f.column in store.values:
        v = store.values[f.column]
    elif f.column == POSITION:
        v = _timeline_position(store)
    else:
        raise ConfigError(
            f"filter column '{f.column}' is not in the data (value columns: "
            f"{', '.join([*store.meta.get('values', store.values), POSITION])}); set source.columns.rating or .values"
        )
    m = np.ones(len(v), dtype=bool)
    if f.eq is not None:
        m &= v == f.eq
    if f.min is not None:
        m &= v >= f.min
    if f.max is not None:
        m &= v <= f.max
    if f.gt is not None:
        m &= v > f.gt
    if f.lt is not None:
        m &= v < f.lt
    if f.isin is not None:
        m &= np.isin(v, np.asarray(f.isin, dtype=v.dtype))
    return m


def _timeline_position(store: InteractionStore) -> np.ndarray:
    """Each event's place in its user's events, i / n for the i-th of n (the store keeps them in time
    order), so a fixed bound splits every timeline at the same fraction."""
    lengths = store.lengths()
    first = np.repeat(store.offsets[:-1], lengths)
    return (np.arange(store.n_events) - first) / np.repeat(np.maximum(lengths, 1), lengths)


def _sub_csr(offsets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Offsets of the events kept by `mask`, per user (order inside a user is unchanged)."""
    counts = np.add.reduceat(mask.astype(np.int64), offsets[:-1]) if len(mask) else np.zeros(len(offsets) - 1)
    counts[np.diff(offsets) == 0] = 0  # reduceat quirk: an empty segment returns the next element
    out = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _salted_rng(split: SplitConfig, salt: str) -> np.random.Generator:
    """The split seed salted by a name, so that two draws of the same size are not correlated."""
    return np.random.default_rng([split.seed, int(sha256_bytes(salt.encode())[:8], 16)])


def _assign(n: int, split: SplitConfig, salt: str) -> np.ndarray:
    """Random split of n examples with the given fractions; the task name salts the seed so that two
    tasks with the same size do not get correlated splits."""
    rng = _salted_rng(split, salt)
    n_valid = int(round(n * split.fractions[1]))
    n_test = int(round(n * split.fractions[2]))
    labels = np.full(n, TRAIN, dtype=np.int8)
    perm = rng.permutation(n)
    labels[perm[:n_valid]] = VALID
    labels[perm[n_valid : n_valid + n_test]] = TEST
    return labels


def _next_item_task(
    t: TaskConfig, split: SplitConfig, lengths: np.ndarray, offsets: np.ndarray, seq: np.ndarray
) -> TaskData:
    n = len(lengths)
    users = np.arange(n, dtype=np.int32)
    last = seq[offsets[1:] - 1] if n else np.zeros(0, dtype=np.int32)
    if split.mode == "by_user":
        s = _assign(n, split, t.name)
        end = np.where(s == TRAIN, lengths, lengths - 1).astype(np.int32)
        target = np.where(s == TRAIN, -1, last).astype(np.int32)
        return TaskData(t.name, t.kind, users, end, target, s)
    if split.mode == "leave_last":
        second = seq[offsets[1:] - 2]
        user = np.concatenate([users, users, users])
        end = np.concatenate([lengths - 2, lengths - 2, lengths - 1]).astype(np.int32)
        target = np.concatenate([np.full(n, -1), second, last]).astype(np.int32)
        s = np.repeat(np.array([TRAIN, VALID, TEST], dtype=np.int8), n)
        return TaskData(t.name, t.kind, user, end, target, s)
    raise ConfigError(f"task {t.name}: next_item splits by_user or leave_last, not '{split.mode}'")


def _cold_items(td: TaskData, fraction: float, split: SplitConfig) -> tuple[TaskData, dict]:
    """Drop the training examples of a random `fraction` of the task's target items (validation and
    test keep theirs, split as before); the draw is seeded by the split seed and the task name."""
    items = np.unique(td.target)
    rng = _salted_rng(split, "cold:" + td.name)
    cold = rng.choice(items, size=int(round(len(items) * fraction)), replace=False)
    keep = ~((td.split == 0) & np.isin(td.target, cold))
    out = TaskData(td.name, td.kind, td.user[keep], td.end[keep], td.target[keep], td.split[keep], items=td.items)
    return out, {"items": len(cold), "of": len(items), "training_examples_dropped": int((~keep).sum())}


def _per_user(mask: np.ndarray, event_user: np.ndarray, k: int, latest: bool) -> np.ndarray:
    """`mask` keeping only each user's latest (or earliest) k events (the store holds events by user,
    in time order)."""
    idx = np.flatnonzero(mask)
    u = event_user[idx]
    if latest:
        beyond = np.searchsorted(u, u, side="right") - 1 - np.arange(len(u))  # the user's kept events after it
    else:
        beyond = np.arange(len(u)) - np.searchsorted(u, u, side="left")  # the user's kept events before it
    out = mask.copy()
    out[idx[beyond >= k]] = False
    return out


def _shared_items(store: InteractionStore, cfg: StreamConfig, keep_event: np.ndarray) -> np.ndarray:
    """Items of the input vocabulary when some task has its own catalogue: those occurring in the input
    events or among the targets of the tasks that share the input's catalogue (bool per item index)."""
    shared = keep_event.copy()
    for t in cfg.tasks:
        if t.kind == "item_rec" and not t.own_items:
            shared |= _mask(store, t.filter)
    seen = np.zeros(store.n_items + 1, dtype=bool)
    seen[store.item_seq[shared]] = True
    seen[0] = True  # padding
    return seen


def _item_rec_task(
    t: TaskConfig,
    store: InteractionStore,
    event_mask: np.ndarray,
    event_user: np.ndarray,
    new_index: np.ndarray,
    new_item: np.ndarray,
    lengths: np.ndarray,
    split: SplitConfig,
) -> TaskData:
    """One example per target event of a kept user (its latest `last_per_user` and earliest
    `first_per_user` ones), reading the user's
    whole input sequence. Targets are input-vocabulary items, or the task's own catalogue (own_items)."""
    m = event_mask
    if t.last_per_user is not None:
        m = _per_user(m, event_user, t.last_per_user, latest=True)
    if t.first_per_user is not None:
        m = _per_user(m, event_user, t.first_per_user, latest=False)
    u = new_index[event_user[m]].astype(np.int32)
    raw = store.item_seq[m]
    items = None
    if t.own_items:
        vocab = np.unique(raw)  # in the store's order: numeric ids in numeric order
        target = (np.searchsorted(vocab, raw) + 1).astype(np.int32)
        items = np.concatenate([np.array([""], dtype=object), store.items[vocab].astype(object)])
    else:
        target = new_item[raw]
    return TaskData(t.name, t.kind, u, lengths[u].astype(np.int32), target, _assign(len(u), split, t.name), items=items)


def _frequent_items(
    store: InteractionStore, keep_event: np.ndarray, event_user: np.ndarray, cfg: SequenceConfig
) -> np.ndarray:
    """Which items stay in the catalogue (bool per item index, padding included): the fixed point of
    "items with >= min_item_count events among kept users" and "users with >= min_length input events"."""
    item_ok = np.ones(store.n_items + 1, dtype=bool)
    if cfg.min_item_count <= 1:
        return item_ok
    while True:
        known = item_ok[store.item_seq]
        user_ok = np.bincount(event_user[keep_event & known], minlength=store.n_users) >= cfg.min_length
        counts = np.bincount(store.item_seq[known & user_ok[event_user]], minlength=store.n_items + 1)
        new = counts >= cfg.min_item_count
        new[0] = True  # padding
        if np.array_equal(new, item_ok):
            return item_ok
        item_ok = new


def _profile_task(
    t: TaskConfig,
    raw: np.ndarray,
    unknown: set[str],
    file: str | None,
    users: np.ndarray,
    lengths: np.ndarray,
    split: SplitConfig,
    notes: dict[str, dict],
) -> TaskData:
    """A classify or binary task from each kept user's raw label (None: none)."""
    assert t.label is not None
    if t.kind == "binary":
        cls, names = binary_labels(raw, t.label, unknown, file, users, t.name)
    else:
        cls, names = class_labels(raw, t.label, unknown, file, users)
    u = np.flatnonzero(cls >= 0).astype(np.int32)
    notes.setdefault(t.name, {})["users_without_label"] = int(len(raw) - len(u))
    return TaskData(
        t.name, t.kind, u, lengths[u].astype(np.int32), cls[u], _assign(len(u), split, t.name), classes=names
    )


def filter_columns(cfg: StreamConfig) -> list[str]:
    """The value columns the stream's filters read: all a stream build needs of the store's values."""
    out: set[str] = set()
    for f in [cfg.sequence.filter, *(t.filter for t in cfg.tasks)]:
        for one in f if isinstance(f, list) else [f] if f is not None else []:
            out.add(one.column)
    return sorted(out - {POSITION})


def build_stream(cfg: StreamConfig, store: InteractionStore) -> Stream:
    t0 = time.perf_counter()
    event_user = np.repeat(np.arange(store.n_users), store.lengths())
    keep_event = _mask(store, cfg.sequence.filter)
    item_ok = _frequent_items(store, keep_event, event_user, cfg.sequence)
    if any(t.own_items for t in cfg.tasks):
        item_ok &= _shared_items(store, cfg, keep_event)
    keep_event &= item_ok[store.item_seq]
    # Kept items renumbered 1..m in their original order (the identity when every item is kept).
    new_item = (np.cumsum(item_ok) - 1).astype(np.int32)
    items = store.items[item_ok]
    sub = _sub_csr(store.offsets, keep_event)
    lengths_all = np.diff(sub)
    min_len = cfg.sequence.min_length
    for t in cfg.tasks:
        need = {"by_user": 2, "leave_last": 3}.get(cfg.split_for(t).mode or "", 1)
        if t.kind == "next_item" and min_len < need:
            raise ConfigError(f"task {t.name}: split {cfg.split_for(t).mode} needs sequence.min_length >= {need}")
    kept = np.flatnonzero(lengths_all >= min_len)
    if len(kept) == 0:
        rare = f" and sequence.min_item_count {cfg.sequence.min_item_count}" if cfg.sequence.min_item_count > 1 else ""
        raise ConfigError(
            f"no user is left: none has sequence.min_length {min_len} input events after the sequence "
            f"filter{rare} (the data has {store.n_users} users, {store.n_events} events)"
        )
    dropped_users = int(store.n_users - len(kept))
    # Input sequences of the kept users, as CSR.
    user_kept = np.zeros(store.n_users, dtype=bool)
    user_kept[kept] = True
    seq_mask = keep_event & user_kept[event_user]
    seq_items = new_item[store.item_seq[seq_mask]]
    lengths = lengths_all[kept]
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    new_index = np.full(store.n_users, -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    users_ext = store.users[kept]
    unknown = {str(u) for u in cfg.source.unknown_labels}

    tasks: dict[str, TaskData] = {}
    notes: dict[str, dict] = {}
    for t in cfg.tasks:
        split = cfg.split_for(t)
        if t.kind == "next_item":
            tasks[t.name] = _next_item_task(t, split, lengths, offsets, seq_items)
        elif t.labels is not None:  # a file of the user's own
            u, vals, notes[t.name] = file_task_rows(t.labels, t.kind, users_ext, items)
            if t.kind == "item_rec":
                tasks[t.name] = TaskData(
                    t.name,
                    t.kind,
                    u.astype(np.int32),
                    lengths[u].astype(np.int32),
                    vals.astype(np.int32),
                    _assign(len(u), split, t.name),
                )
                continue
            raw = np.full(len(kept), None, dtype=object)
            raw[u] = vals
            tasks[t.name] = _profile_task(t, raw, unknown, t.labels.path, users_ext, lengths, split, notes)
        elif t.kind == "item_rec":
            m = _mask(store, t.filter) & user_kept[event_user]
            if not t.own_items:
                m &= item_ok[store.item_seq]
            td = _item_rec_task(t, store, m, event_user, new_index, new_item, lengths, split)
            notes[t.name] = {"targets_also_in_input": int((_mask(store, t.filter) & seq_mask).sum())}
            if td.items is not None:
                notes[t.name]["own_items"] = len(td.items) - 1
            if t.cold_items is not None:
                td, notes[t.name]["cold_items"] = _cold_items(td, t.cold_items, split)
            tasks[t.name] = td
        else:
            assert t.label is not None
            if t.label.field not in store.labels:
                raise ConfigError(
                    f"task {t.name}: label field '{t.label.field}' is not in the user data "
                    f"(fields: {', '.join(store.labels) or 'none'})"
                )
            raw = store.labels[t.label.field][kept]
            file = store.meta.get("profile_file", store.meta.get("file"))
            tasks[t.name] = _profile_task(t, raw, unknown, file, users_ext, lengths, split, notes)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": cfg.name,
        "source": store.meta,
        "vocab_hash": vocab_hash(items),
        "users": int(len(kept)),
        "users_dropped_short": dropped_users,
        "items": len(items) - 1,
        "items_dropped_rare": int(store.n_items + 1 - len(items)),
        "input_events": int(len(seq_items)),
        "tasks": {
            name: {
                "kind": td.kind,
                **{s: td.size(i) for i, s in enumerate(SPLIT_NAMES)},
                **({"classes": td.classes} if td.classes is not None else {}),
                **notes.get(name, {}),
            }
            for name, td in tasks.items()
        },
        "build_seconds": round(time.perf_counter() - t0, 3),
        "config": cfg.model_dump(mode="json", by_alias=True),
    }
    return Stream(cfg, users_ext, items, offsets, seq_items, tasks, manifest)


# --------------------------------------------------------------------------- saving and loading


def save_stream(stream: Stream, out: Path) -> Path:
    """Write the prepared stream atomically: a crash leaves the old directory or nothing."""
    with atomic_directory(out) as d:
        pq.write_table(pa.table({"user": pa.array(stream.users.tolist(), pa.string())}), d / "users.parquet")
        pq.write_table(pa.table({"item": pa.array(stream.items[1:].tolist(), pa.string())}), d / "items.parquet")
        np.save(d / "seq_offsets.npy", stream.offsets)
        np.save(d / "seq_items.npy", stream.seq_items)
        (d / "tasks").mkdir()
        for name, td in stream.tasks.items():
            np.savez(d / "tasks" / f"{name}.npz", user=td.user, end=td.end, target=td.target, split=td.split)
            if td.items is not None:
                table = pa.table({"item": pa.array(td.items[1:].tolist(), pa.string())})
                pq.write_table(table, d / "tasks" / f"{name}.items.parquet")
        files = sorted(p for p in d.rglob("*") if p.is_file())
        manifest = dict(stream.manifest)
        manifest["files"] = {str(p.relative_to(d)): sha256_file(p) for p in files}
        write_json_atomic(d / "manifest.json", manifest)
    stream.manifest = json.loads((out / "manifest.json").read_text())
    return out


def load_stream(path: Path) -> Stream:
    mf = path / "manifest.json"
    if not mf.is_file():
        raise DataError(
            "not a prepared stream (no manifest.json)",
            file=path,
            expected="a folder written by `lifelongrec data prepare`",
        )
    manifest = json.loads(mf.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"prepared with format version {manifest.get('format_version')}, this lifelongrec reads "
            f"{FORMAT_VERSION}; run `lifelongrec data prepare` again",
            file=mf,
        )
    cfg = StreamConfig.model_validate(manifest["config"])
    tasks = {}
    for t in cfg.tasks:
        with np.load(path / "tasks" / f"{t.name}.npz", allow_pickle=False) as z:
            tasks[t.name] = TaskData(
                t.name,
                t.kind,
                z["user"],
                z["end"],
                z["target"],
                z["split"],
                classes=manifest["tasks"][t.name].get("classes"),
            )
        if "own_items" in manifest["tasks"][t.name]:
            own = pq.read_table(path / "tasks" / f"{t.name}.items.parquet").column("item").to_pylist()
            tasks[t.name].items = np.array(["", *own], dtype=object)
    items = pq.read_table(path / "items.parquet").column("item").to_numpy(zero_copy_only=False)
    return Stream(
        cfg,
        pq.read_table(path / "users.parquet").column("user").to_numpy(zero_copy_only=False),
        np.concatenate([np.array([""], dtype=object), items.astype(object)]),
        # Memory-mapped, read-only: processes on one machine (torchrun's ranks, a server's workers)
        # share the stream's pages instead of each holding a copy.
        np.load(path / "seq_offsets.npy", allow_pickle=False, mmap_mode="r"),
        np.load(path / "seq_items.npy", allow_pickle=False, mmap_mode="r"),
        tasks,
        manifest,
    )


def stream_key(cfg: StreamConfig) -> str:
    """Prepared data depends on the source, sequences, splits and tasks: not on the model, training,
    finetuning or method settings (changing a prune ratio must not re-prepare the data)."""
    drop: dict[str, Any] = {
        "train": True,
        "model": True,
        "finetune": True,
        "method": True,
        "tasks": {"__all__": {"train"}},  # a task's training overrides are not data
    }
    data = cfg.model_dump(mode="json", by_alias=True, exclude=drop)
    # A task's label file is data too: a changed file is another stream.
    files = {t.name: sha256_file(Path(t.labels.path)) for t in cfg.tasks if t.labels and Path(t.labels.path).is_file()}
    if files:
        data["label_files"] = files
    return f"{cfg.name}-{sha256_bytes(json.dumps(data, sort_keys=True).encode())[:12]}"
