"""A small synthetic interaction log with learnable structure, written by tests that train models.

Every user walks the item ring 1 -> 2 -> ... -> 20 -> 1 from a random start (rated 3), jumping to a
random item 30% of the time, so the next item is predictable but not always; each user also rates 4
the item two steps past their last item, and their "gender" is the parity of their start item, so
item and profile tasks are learnable too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_ITEMS = 20


def write_synthetic(folder: Path, n_users: int = 120, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    rows, users = ["user_id,item_id,timestamp,rating"], ["user_id,gender"]
    for u in range(n_users):
        start = int(rng.integers(1, N_ITEMS + 1))
        length = int(rng.integers(8, 16))
        items = [start]
        for _ in range(length - 1):  # the ring, with a random jump 30% of the time
            nxt = items[-1] % N_ITEMS + 1 if rng.random() > 0.3 else int(rng.integers(1, N_ITEMS + 1))
            items.append(nxt)
        t = 0
        for it in items:
            t += 1
            rows.append(f"u{u},i{it},{t},3")
        rows.append(f"u{u},i{(items[-1] + 1) % N_ITEMS + 1},{t + 1},4")
        users.append(f"u{u},{'M' if start % 2 else 'F'}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    (folder / "users.csv").write_text("\n".join(users) + "\n")
    return folder / "log.csv", folder / "users.csv"


def synthetic_config(folder: Path, backbone: str = "nextitnet", epochs: int = 4, extra: str = "") -> Path:
    log, users = write_synthetic(folder)
    text = f"""
name: synthetic
source:
  path: {log}
  format: csv
  columns: {{rating: rating}}
  profiles: {{path: {users}, format: csv}}
sequence: {{filter: {{column: rating, max: 3}}, min_length: 5, max_length: 12}}
split: {{seed: 1, fractions: [0.7, 0.15, 0.15]}}
tasks:
  - {{name: T1, kind: next_item}}
  - {{name: T2, kind: item_rec, filter: {{column: rating, eq: 4}}}}
  - {{name: T3, kind: classify, label: gender}}
model: {{name: {backbone}, d: 16, dilations: [1, 2], layers: 1, heads: 2, max_length: 16}}
train: {{epochs: {epochs}, batch_size: 16, lr: 0.01, patience: 10, seed: 0, threads: 1, ks: [1, 5]}}
{extra}
"""
    p = folder / "synthetic.yaml"
    p.write_text(text)
    return p


def after_t1(method: str, cfg, stream):
    """`method` built on `stream` with T1 learned in structure only (untrained weights), so the next
    `before_task(TaskInfo(name, kind, 1))` opens a second task's network."""
    from lifelongrec.methods import TaskInfo, build_method

    m = build_method(method, cfg, stream)
    m.before_task(TaskInfo("T1", "next_item", 0))
    m.after_task(TaskInfo("T1", "next_item", 0))
    return m


def read_matrix(run: Path) -> list[list[float | None]]:
    """A run's matrix.csv as rows of R[i][j] (None above the diagonal)."""
    lines = (run / "matrix.csv").read_text().splitlines()[1:]
    return [[float(x) if x else None for x in line.split(",")[1:]] for line in lines]
