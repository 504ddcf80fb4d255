"""A store's events a block of whole users at a time, so that building a stream from a store of any
size holds one block's events in memory, never all of them.

A block is an InteractionStore of consecutive users (its offsets start at 0) read from the store's
Parquet file in order; `first` is the index of its first user in the whole store. Blocks end on user
boundaries, so everything computed per user (timeline positions, a user's latest k targets) is
computed inside one block exactly as on the whole store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .store import InteractionStore

# ~8M events per block: with two value columns and the masks of a build, a few hundred MB.
BLOCK_EVENTS = 1 << 23

Blocks = Callable[[], Iterator[tuple[int, InteractionStore]]]


def whole(store: InteractionStore) -> Blocks:
    """A store already in memory, as one block."""
    return lambda: iter([(0, store)])


def block_users(first: int, block: InteractionStore) -> np.ndarray:
    """Each event's user, as an index into the whole store's users."""
    return first + np.repeat(np.arange(block.n_users, dtype=np.int64), block.lengths())


def read_blocks(path: Path, header: InteractionStore, values: list[str], max_events: int = BLOCK_EVENTS) -> Blocks:
    """Blocks of the store at `path` holding the item and the `values` columns of about `max_events`
    events each (one user with more events makes a block alone). `header` is the store loaded with
    `events=False` (load_store): users, offsets and items, shared by every block."""
    meta = json.loads((path / "store.json").read_text())
    names = {name: f"v_{k}" for k, name in enumerate(meta["values"]) if name in values}
    offsets = header.offsets

    def block(ua: int, ub: int, cols: dict[str, np.ndarray], n: int) -> InteractionStore:
        pos = int(offsets[ua])
        return InteractionStore(
            users=header.users[ua:ub],
            items=header.items,
            offsets=offsets[ua : ub + 1] - pos,
            item_seq=cols["item"][:n].astype(np.int32, copy=False),
            timestamps=None,
            values={name: cols[c][:n].astype(np.float32, copy=False) for name, c in names.items()},
            labels={},
            meta=header.meta,
        )

    def gen() -> Iterator[tuple[int, InteractionStore]]:
        file = pq.ParquetFile(path / "interactions.parquet")
        parts: dict[str, list[np.ndarray]] = {c: [] for c in ["item", *names.values()]}
        held, ua = 0, 0  # events in `parts`; the first user they belong to
        batches = file.iter_batches(batch_size=min(max_events, 1 << 20), columns=list(parts))
        for batch in batches:
            for c in parts:
                parts[c].append(batch.column(c).to_numpy(zero_copy_only=False))  # nulls: NaN, as load_store
            held += batch.num_rows
            if held < max_events:
                continue
            end = int(offsets[ua]) + held
            ub = int(np.searchsorted(offsets, end, side="right")) - 1  # the last user boundary in the buffer
            if offsets[ub] == offsets[ua]:
                continue  # one user longer than the buffer: read on
            n = int(offsets[ub] - offsets[ua])
            cols = {c: np.concatenate(v) for c, v in parts.items()}
            yield ua, block(ua, ub, cols, n)
            parts = {c: [v[n:]] for c, v in cols.items()}
            held, ua = held - n, ub
        cols = {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}
        if ua < header.n_users or not header.n_users:
            yield ua, block(ua, header.n_users, cols, held)

    return gen
