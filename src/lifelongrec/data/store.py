"""The canonical store: every user's events in a deterministic chronological order.

Ingestion runs inside DuckDB (out of core: a memory limit plus a spill directory), so a file larger
than memory is never loaded whole. The result is Parquet on disk, sorted by (user, timestamp, file
row): the file row breaks timestamp ties stably, which matters because ML-1M has 529,046 ratings that
tie with an earlier rating of the same user. In memory the store is CSR: `offsets` into flat arrays.

Vocabularies keep the user's own ids as text. Item index 0 is padding; real items are 1..n in a
stable order (numeric ids numerically, then the rest as text), so the same file always gives the
same ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..config import SourceConfig
from ..fsutil import clean_stale_temporaries, sha256_bytes
from .ingest import STORE_VERSION, ingest
from .locks import cache_lock
from .readers import Scan, interaction_scan


@dataclass
class InteractionStore:
    """User sequences in CSR form: the events of user u are [offsets[u], offsets[u+1])."""

    users: np.ndarray  # external user ids (str), index = user index
    items: np.ndarray  # external item ids (str), index 0 = padding ("")
    offsets: np.ndarray  # int64 [n_users + 1]
    item_seq: np.ndarray  # int32 [n_events], item index per event
    timestamps: np.ndarray | None  # float64 [n_events]; None when loaded without them (load_store)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # float32 [n_events] per value column
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # object [n_users] per label, None = missing
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items) - 1

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1])  # also for a store loaded without its events (load_store)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def vocab_hash(items: np.ndarray) -> str:
    """The identity of an item vocabulary (external ids, index 0 = padding): artifacts and prepared streams
    are matched by it, so every place that names a vocabulary must hash it here."""
    return sha256_bytes("\n".join(items[1:].tolist()).encode("utf-8"))


def load_store(
    path: Path, values: list[str] | None = None, timestamps: bool = True, events: bool = True
) -> InteractionStore:
    """The store at `path`. `values`: only these value columns (None: all), and `timestamps=False` leaves
    the timestamps out (None): building a stream needs neither, and on 100M events each float column
    is 400-800 MB. Columns are read one at a time, so one column's Arrow buffers are freed before the
    next is read (the peak is the arrays kept plus one column, not the whole table twice).
    `events=False`: users, items, offsets and labels only (no per-event array; data/blocks.py reads
    the events a block of users at a time)."""
    meta = json.loads((path / "store.json").read_text())
    inter = path / "interactions.parquet"

    def column(name: str) -> np.ndarray:
        return pq.read_table(inter, columns=[name]).column(name).to_numpy()

    users = pq.read_table(path / "users.parquet")
    items = pq.read_table(path / "items.parquet").column("item").to_numpy(zero_copy_only=False)
    counts = users.column("events").to_numpy()
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    wanted = set(meta["values"] if values is None else values) if events else set()
    vals = {
        name: column(f"v_{k}").astype(np.float32, copy=False) for k, name in enumerate(meta["values"]) if name in wanted
    }
    labels = {
        c.split(":", 1)[1]: users.column(c).to_numpy(zero_copy_only=False)
        for c in users.column_names
        if c.startswith("label:")
    }
    ts = None
    if timestamps and events:
        ts = column("timestamp")
        ts = np.nan_to_num(ts.astype(np.float64), nan=0.0) if ts.dtype != np.float64 else ts
    return InteractionStore(
        users=users.column("user").to_numpy(zero_copy_only=False),
        items=np.concatenate([np.array([""], dtype=object), items.astype(object)]),
        offsets=offsets,
        item_seq=column("item").astype(np.int32, copy=False) if events else np.zeros(0, dtype=np.int32),
        timestamps=ts,
        values=vals,
        labels=labels,
        meta=meta,
    )


def source_fingerprint(source: SourceConfig, hashes: dict[str, str], scan: Scan, profile: Scan | None) -> str:
    """Identifies an ingested store: the source config plus file identities (pinned hashes when known,
    else size and modification time, so an edited file is ingested again)."""
    ident = {"config": source.model_dump(mode="json"), "hashes": hashes, "store_version": STORE_VERSION}
    for s in [*(scan.parts or [scan]), profile]:
        if s is not None and not hashes:
            st = s.file.stat()
            ident[str(s.file)] = [st.st_size, st.st_mtime_ns]
    return sha256_bytes(json.dumps(ident, sort_keys=True).encode())[:16]


def ensure_store(source: SourceConfig, cache: Path, memory_limit: str | None = None) -> Path:
    """Ingest the source once into `cache/stores/<fingerprint>` and load it.

    Writers hold the lock of the `stores` folder (waiting for it: see data/locks.py), so two processes
    never ingest into the cache at once; the one that waited finds the store written and loads it.
    Under the lock, the temporaries of a killed ingestion are removed. A finished store is read without
    the lock: it appears whole (renamed into place) and is never rewritten."""
    scan, profile, hashes = interaction_scan(source)
    fp = source_fingerprint(source, hashes, scan, profile)
    path = cache / "stores" / fp
    if not (path / "store.json").is_file():
        with cache_lock(path.parent, what="store cache"):
            clean_stale_temporaries(path.parent)
            if not (path / "store.json").is_file():
                if source.dataset is not None:
                    # store.json claims the pinned hashes: hash the files again now, whatever the stamp says
                    from .sources import fetch

                    fetch(source.dataset, quiet=True, verify=True)
                ingest(scan, profile, path, memory_limit, extra_meta={"fingerprint": fp, "source_hashes": hashes})
    return path


def open_store(
    source: SourceConfig,
    cache: Path,
    memory_limit: str | None = None,
    values: list[str] | None = None,
    timestamps: bool = True,
) -> InteractionStore:
    """The source's store (ingested first if needed: ensure_store), loaded (load_store)."""
    return load_store(ensure_store(source, cache, memory_limit), values, timestamps)
