"""Tenrec (Yuan et al., NeurIPS 2022 datasets track): its CSVs and its lifelong benchmark's task files.

Tenrec cannot be downloaded here (a licence page); users bring it. No timestamp column: file order is
click order; gender and age (0 = unknown) repeat on every row of a user.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Columns
from ..errors import DataError
from .readers import Scan, _delimited
from .textfile import check_header

_TENREC_VALUES = ["click", "follow", "like", "share", "watching_times"]
_TENREC_LABELS = ["gender", "age"]


def tenrec(path: Path, cols: Columns | None, encoding: str = "utf-8", max_line_size: int | None = None) -> Scan:
    """Tenrec CSVs: no timestamp, file order is click order; gender/age repeated on every row."""
    if cols is None:  # the default columns, with the value and label columns this file has
        header = check_header(path, ",", encoding, {"user": "user_id", "item": "item_id"})
        cols = Columns(
            user="user_id",
            item="item_id",
            timestamp=None,
            values=[v for v in _TENREC_VALUES if v in header],
            labels=[v for v in _TENREC_LABELS if v in header],
        )
    return _delimited(path, ",", cols, encoding, max_line_size=max_line_size)


def _tenrec_files(folder: Path) -> list[Path]:
    """task_0.csv, task_1.csv, ... of a Tenrec lifelong folder: consecutive from 0, at least two."""
    if not folder.is_dir():
        raise DataError("is a file, not a folder", file=folder, expected="the folder holding task_0.csv, task_1.csv")
    found = {}
    for f in folder.glob("task_*.csv"):
        k = f.stem.removeprefix("task_")
        if k.isdigit():
            found[int(k)] = f
    files: list[Path] = []
    while len(files) in found:
        files.append(found[len(files)])
    if len(files) < 2:
        missing = "task_0.csv" if 0 not in found else "task_1.csv"
        raise DataError(
            f"{missing} is missing (found: {', '.join(sorted(f.name for f in found.values())) or 'no task_K.csv'})",
            file=folder,
            expected="Tenrec's lifelong task files task_0.csv (the first task's clicks), task_1.csv, ...",
        )
    extra = sorted(k for k in found if k >= len(files))
    if extra:
        raise DataError(
            f"task_{len(files)}.csv is missing but task_{extra[0]}.csv exists",
            file=folder,
            expected="task files numbered without gaps from task_0.csv",
        )
    return files


def tenrec_lifelong(
    folder: Path, cols: Columns | None, encoding: str = "utf-8", max_line_size: int | None = None
) -> Scan:
    """Tenrec's lifelong benchmark (the 2022-NIPS-Tenrec repository's gen_lifelong.py): task_K.csv are
    Tenrec CSVs of different scenarios for the same users (task_0: QK-video clicks, then QK-article,
    QB-video, QB-article). Read as one store: value `task` = K; item ids of task_K (K >= 1) prefixed
    "task_K:", since every scenario numbers its own items (an article 12 is not the video 12). A task
    keeps one file's events with a filter such as [{column: task, eq: 1}, {column: click, eq: 1}]."""
    parts = [tenrec(f, cols, encoding, max_line_size) for f in _tenrec_files(folder)]
    values = ["task", *dict.fromkeys(v for p in parts for v in p.values)]
    labels = list(dict.fromkeys(c for p in parts for c in p.labels))
    for k, p in enumerate(parts):
        p.absent = [c for c in values[1:] + labels if c not in p.values and c not in p.labels]
        p.values, p.labels, p.constants = values, labels, {"task": float(k)}
        p.item_prefix = f"task_{k}:" if k else ""
    first = parts[0]
    return Scan(folder, "", first.user, first.item, None, values, labels, parts=parts)
