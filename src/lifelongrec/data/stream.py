"""A task stream: input sequences, per-task examples and their fixed splits (built by data/build.py),
written and read back here.

Every task example is four numbers: the user, how much of the user's input sequence the model may
read (`end`: the prefix seq[:end]), the target (an item index, a class index, or -1 for "train on
every position of the prefix"), and the split (0 train, 1 valid, 2 test). One representation covers
next-item pretraining (split by user, or leave-last-out), item recommendation and classification, and
because the split is written to disk once, every method that ever runs on the stream sees the same one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import StreamConfig
from ..errors import ConfigError, DataError
from ..fsutil import atomic_directory, sha256_bytes, sha256_file, write_json_atomic

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


# --------------------------------------------------------------------------- saving and loading


def save_stream(stream: Stream, out: Path) -> Path:
    """Write the prepared stream atomically: a crash leaves the old directory or nothing."""
    with atomic_directory(out) as d:
        pq.write_table(pa.table({"user": pa.array(stream.users.tolist(), pa.string())}), d / "users.parquet")
        pq.write_table(pa.table({"item": pa.array(stream.items[1:].tolist(), pa.string())}), d / "items.parquet")
        np.save(d / "seq_offsets.npy", stream.offsets)
        if isinstance(stream.seq_items, np.memmap) and stream.seq_items.filename:
            shutil.copyfile(stream.seq_items.filename, d / "seq_items.npy")  # built to a file: no copy in memory
        else:
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
