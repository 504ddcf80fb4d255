"""Examples -> left-padded id windows, vectorised: no per-example Python anywhere in the hot loop.

Every window is built by index arithmetic over the CSR arrays once per task, then batches are slices.
"""

from __future__ import annotations

import numpy as np


def windows(offsets: np.ndarray, seq_items: np.ndarray, user: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    """[n, width] int64: row i holds seq(user[i])[:end[i]], its last `width` items, left-padded with 0."""
    start = offsets[user].astype(np.int64)
    stop = start + end.astype(np.int64)
    idx = stop[:, None] - width + np.arange(width, dtype=np.int64)[None, :]
    valid = idx >= start[:, None]
    out = np.where(valid, seq_items[np.clip(idx, 0, max(len(seq_items) - 1, 0))], 0)
    return out.astype(np.int64, copy=False)


def history_windows(
    offsets: np.ndarray, seq_items: np.ndarray, user: np.ndarray, end: np.ndarray, width: int
) -> np.ndarray:
    """Cover each seq(user[i])[:end[i]] with windows of `width` items, newest first, consecutive windows
    overlapping by one item: every position from the second on is the target of exactly one window."""
    if width < 2:
        raise ValueError("history windows need room for an input and a target")
    step = width - 1
    end = end.astype(np.int64)
    n_win = np.maximum(1, -(-(end - 1) // step))  # ceil((end - 1) / step)
    first = np.cumsum(n_win) - n_win
    k = np.arange(int(n_win.sum())) - np.repeat(first, n_win)  # 0 = the newest window of its user
    return windows(offsets, seq_items, np.repeat(user, n_win), np.repeat(end, n_win) - k * step, width)


def sort_by_length(w: np.ndarray) -> np.ndarray:
    """Order rows by number of real items, so a batch can drop the all-padding columns on its left."""
    return np.argsort((w > 0).sum(1), kind="stable")


def trim_left(batch: np.ndarray) -> np.ndarray:
    """Drop leading columns that are padding in every row (they cannot change any output)."""
    nz = np.flatnonzero((batch > 0).any(0))
    return batch[:, nz[0] :] if len(nz) else batch[:, -1:]
