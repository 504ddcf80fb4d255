"""From the store to a task stream: input sequences, per-task examples and their fixed splits, built
a block of whole users at a time (data/blocks.py), so memory holds one block's events plus what the
stream keeps per user and per example, whatever the number of events.

Passes over the blocks: the catalogue (items with enough events among users with enough input; a
fixed point, two passes per round, none when every item is kept), the input lengths per user, then
one pass writing the input sequences (to a file when `seq_path` is given) and collecting every item
task's target events. A store in memory is one block (blocks.whole), and gives the same stream.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import Filter, SequenceConfig, SplitConfig, StreamConfig, TaskConfig
from ..errors import ConfigError
from ..fsutil import sha256_bytes
from .blocks import Blocks, block_users, whole
from .labelfile import file_task_rows
from .labels import binary_labels, class_labels
from .store import InteractionStore, vocab_hash
from .stream import FORMAT_VERSION, POSITION, SPLIT_NAMES, TEST, TRAIN, VALID, Stream, TaskData


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


def _frequent_items(store: InteractionStore, blocks: Blocks, cfg: SequenceConfig) -> np.ndarray:
    """Which items stay in the catalogue (bool per item index, padding included): the fixed point of
    "items with >= min_item_count events among kept users" and "users with >= min_length input events"."""
    item_ok = np.ones(store.n_items + 1, dtype=bool)
    if cfg.min_item_count <= 1:
        return item_ok
    while True:
        user_ok = _input_lengths(store, blocks, cfg.filter, item_ok) >= cfg.min_length
        counts = np.zeros(store.n_items + 1, dtype=np.int64)
        for first, b in blocks():
            known = item_ok[b.item_seq] & user_ok[block_users(first, b)]
            counts += np.bincount(b.item_seq[known], minlength=store.n_items + 1)
        new = counts >= cfg.min_item_count
        new[0] = True  # padding
        if np.array_equal(new, item_ok):
            return item_ok
        item_ok = new


def _input_lengths(store: InteractionStore, blocks: Blocks, f: Filter | list[Filter] | None, item_ok) -> np.ndarray:
    """Per user, the events passing the sequence filter whose item is in the catalogue."""
    out = np.zeros(store.n_users, dtype=np.int64)
    for first, b in blocks():
        keep = _mask(b, f) & item_ok[b.item_seq]
        out[first : first + b.n_users] = np.bincount(block_users(0, b)[keep], minlength=b.n_users)
    return out


def _shared_items(store: InteractionStore, blocks: Blocks, cfg: StreamConfig) -> np.ndarray:
    """Items of the input vocabulary when some task has its own catalogue: those occurring in the input
    events or among the targets of the tasks that share the input's catalogue (bool per item index)."""
    seen = np.zeros(store.n_items + 1, dtype=bool)
    for _, b in blocks():
        shared = _mask(b, cfg.sequence.filter)
        for t in cfg.tasks:
            if t.kind == "item_rec" and not t.own_items:
                shared |= _mask(b, t.filter)
        seen[b.item_seq[shared]] = True
    seen[0] = True  # padding
    return seen


def _target_events(
    t: TaskConfig, b: InteractionStore, event_user: np.ndarray, user_kept: np.ndarray, item_ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A block's target events of an item task: its filter, kept users, catalogue items (unless the task
    has its own), then each user's latest `last_per_user` and earliest `first_per_user`. Returns the
    events' users (store index) and raw items."""
    m = _mask(b, t.filter) & user_kept[event_user]
    if not t.own_items:
        m &= item_ok[b.item_seq]
    if t.last_per_user is not None:
        m = _per_user(m, event_user, t.last_per_user, latest=True)
    if t.first_per_user is not None:
        m = _per_user(m, event_user, t.first_per_user, latest=False)
    return event_user[m], b.item_seq[m]


def _item_rec_task(
    t: TaskConfig,
    store: InteractionStore,
    user: np.ndarray,
    raw: np.ndarray,
    new_index: np.ndarray,
    new_item: np.ndarray,
    lengths: np.ndarray,
    split: SplitConfig,
) -> TaskData:
    """One example per target event (from _target_events), reading the user's whole input sequence.
    Targets are input-vocabulary items, or the task's own catalogue (own_items)."""
    u = new_index[user].astype(np.int32)
    items = None
    if t.own_items:
        vocab = np.unique(raw)  # in the store's order: numeric ids in numeric order
        target = (np.searchsorted(vocab, raw) + 1).astype(np.int32)
        items = np.concatenate([np.array([""], dtype=object), store.items[vocab].astype(object)])
    else:
        target = new_item[raw]
    return TaskData(t.name, t.kind, u, lengths[u].astype(np.int32), target, _assign(len(u), split, t.name), items=items)


class _SeqWriter:
    """The input sequences, block after block: into memory, or into an .npy file (read back
    memory-mapped), so that a build never holds them all."""

    def __init__(self, n: int, path: Path | None) -> None:
        self.n, self.path, self.at = n, path, 0
        if path is None:
            self.arr = np.empty(n, dtype=np.int32)
        else:
            self.file = open(path, "wb")  # noqa: SIM115 (closed in done())
            np.lib.format.write_array_header_1_0(self.file, {"descr": "<i4", "fortran_order": False, "shape": (n,)})

    def write(self, part: np.ndarray) -> None:
        part = part.astype("<i4", copy=False)
        if self.path is None:
            self.arr[self.at : self.at + len(part)] = part
        else:
            self.file.write(part.tobytes())
        self.at += len(part)

    def done(self) -> np.ndarray:
        assert self.at == self.n, (self.at, self.n)
        if self.path is None:
            return self.arr
        self.file.close()
        return np.load(self.path, mmap_mode="r")


def build_stream(
    cfg: StreamConfig, store: InteractionStore, blocks: Blocks | None = None, seq_path: Path | None = None
) -> Stream:
    """The stream of `cfg` from `store`: its events as `blocks` (default: the store in memory, one block),
    the input sequences written to `seq_path` when given (else held in memory)."""
    t0 = time.perf_counter()
    blocks = blocks or whole(store)
    item_ok = _frequent_items(store, blocks, cfg.sequence)
    if any(t.own_items for t in cfg.tasks):
        item_ok &= _shared_items(store, blocks, cfg)
    # Kept items renumbered 1..m in their original order (the identity when every item is kept).
    new_item = (np.cumsum(item_ok) - 1).astype(np.int32)
    items = store.items[item_ok]
    lengths_all = _input_lengths(store, blocks, cfg.sequence.filter, item_ok)
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
    user_kept = np.zeros(store.n_users, dtype=bool)
    user_kept[kept] = True
    lengths = lengths_all[kept]
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    new_index = np.full(store.n_users, -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    users_ext = store.users[kept]
    unknown = {str(u) for u in cfg.source.unknown_labels}

    # One pass: the input sequences of the kept users (CSR), and every item task's target events.
    item_tasks = [t for t in cfg.tasks if t.kind == "item_rec" and t.labels is None]
    found: dict[str, tuple[list, list]] = {t.name: ([], []) for t in item_tasks}
    in_input = dict.fromkeys(found, 0)
    seq = _SeqWriter(int(offsets[-1]), seq_path)
    for first, b in blocks():
        event_user = block_users(first, b)
        seq_mask = _mask(b, cfg.sequence.filter) & item_ok[b.item_seq] & user_kept[event_user]
        seq.write(new_item[b.item_seq[seq_mask]])
        for t in item_tasks:
            u, raw = _target_events(t, b, event_user, user_kept, item_ok)
            found[t.name][0].append(u)
            found[t.name][1].append(raw)
            in_input[t.name] += int((_mask(b, t.filter) & seq_mask).sum())
    seq_items = seq.done()

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
            us, raws = found.pop(t.name)
            user = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
            raw = np.concatenate(raws) if raws else np.zeros(0, dtype=np.int32)
            td = _item_rec_task(t, store, user, raw, new_index, new_item, lengths, split)
            notes[t.name] = {"targets_also_in_input": in_input[t.name]}
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
