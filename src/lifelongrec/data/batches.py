"""Examples -> left-padded id windows, vectorised: no per-example Python anywhere in the hot loop.

Every window is built by index arithmetic over the CSR arrays once per task, then batches are slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def windows(offsets: np.ndarray, seq_items: np.ndarray, user: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    """[n, width] int64: row i holds seq(user[i])[:end[i]], its last `width` items, left-padded with 0."""
    start = offsets[user].astype(np.int64)
    stop = start + end.astype(np.int64)
    idx = stop[:, None] - width + np.arange(width, dtype=np.int64)[None, :]
    valid = idx >= start[:, None]
    out = np.where(valid, seq_items[np.clip(idx, 0, max(len(seq_items) - 1, 0))], 0)
    return out.astype(np.int64, copy=False)


@dataclass
class Windows:
    """Windows described, not built: row i is seq(user[i])[:end[i]], its last `width` items, left-padded.

    Rows are made when indexed (`w[idx]` is what `windows()` returns for those rows), so a task holds 8
    bytes per example instead of 8 x width: T1's windows on a 100M-event stream are ~0.9 GB built and
    ~30 MB described, and the sequences they read stay memory-mapped and shared by every process."""

    offsets: np.ndarray
    seq_items: np.ndarray
    user: np.ndarray  # int32/int64 [n]
    end: np.ndarray  # int64 [n]
    width: int

    def __len__(self) -> int:
        return len(self.user)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user), self.width)

    def __getitem__(self, idx) -> np.ndarray:
        return windows(self.offsets, self.seq_items, self.user[idx], self.end[idx], self.width)

    def lengths(self) -> np.ndarray:
        """Real (non-padding) items per row: what `(w > 0).sum(1)` gives on the built rows."""
        return np.minimum(self.end, self.width)

    def last_items(self) -> np.ndarray:
        """Each row's last item (0 for an empty row)."""
        at = self.offsets[self.user].astype(np.int64) + self.end - 1
        out = self.seq_items[np.clip(at, 0, max(len(self.seq_items) - 1, 0))].astype(np.int64)
        return np.where(self.end > 0, out, 0)

    def select(self, idx) -> Windows:
        """The windows of rows `idx` (an index array or a boolean mask), still described."""
        return Windows(self.offsets, self.seq_items, self.user[idx], self.end[idx], self.width)


def described_windows(
    offsets: np.ndarray, seq_items: np.ndarray, user: np.ndarray, end: np.ndarray, width: int
) -> Windows:
    return Windows(offsets, seq_items, np.asarray(user), np.asarray(end).astype(np.int64), width)


def history_windows(
    offsets: np.ndarray, seq_items: np.ndarray, user: np.ndarray, end: np.ndarray, width: int
) -> Windows:
    """Cover each seq(user[i])[:end[i]] with windows of `width` items, newest first, consecutive windows
    overlapping by one item: every position from the second on is the target of exactly one window."""
    if width < 2:
        raise ValueError("history windows need room for an input and a target")
    step = width - 1
    end = end.astype(np.int64)
    n_win = np.maximum(1, -(-(end - 1) // step))  # ceil((end - 1) / step)
    first = np.cumsum(n_win) - n_win
    k = np.arange(int(n_win.sum())) - np.repeat(first, n_win)  # 0 = the newest window of its user
    return Windows(offsets, seq_items, np.repeat(user, n_win), np.repeat(end, n_win) - k * step, width)


def row_lengths(w: np.ndarray | Windows) -> np.ndarray:
    """Real (non-padding) items per row of built or described windows."""
    return w.lengths() if isinstance(w, Windows) else (w > 0).sum(1)


def sort_by_length(w: np.ndarray | Windows) -> np.ndarray:
    """Order rows by number of real items, so a batch can drop the all-padding columns on its left."""
    return np.argsort(row_lengths(w), kind="stable")


def trim_left(batch: np.ndarray) -> np.ndarray:
    """Drop leading columns that are padding in every row (they cannot change any output)."""
    nz = np.flatnonzero((batch > 0).any(0))
    return batch[:, nz[0] :] if len(nz) else batch[:, -1:]


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 64) -> list:
    """Random batches of similar lengths: shuffle, sort within groups of `bucket` batches, shuffle batches.
    Similar lengths let each batch drop its all-padding columns."""
    perm = rng.permutation(len(lengths))
    out = []
    step = batch_size * bucket
    for s in range(0, len(perm), step):
        group = perm[s : s + step]
        group = group[np.argsort(lengths[group], kind="stable")]
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def packed_batches(counts: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Users in random order, cut into batches of whole users holding at most `batch_size` targets
    (`counts[u]` each); a user with more targets than that makes a batch alone."""
    perm = rng.permutation(len(counts))
    out, start, held = [], 0, 0
    for i, u in enumerate(perm):
        if held and held + counts[u] > batch_size:
            out.append(perm[start:i])
            start, held = i, 0
        held += int(counts[u])
    if start < len(perm):
        out.append(perm[start:])
    return out
