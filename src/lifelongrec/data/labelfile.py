"""A task's targets from a file of the user's own (a task's `labels:`; `lifelongrec task add`).

Classify and binary tasks: one row per user with a label. Item tasks: rows of (user, item), any
number per user. Ids are read as text, as written. An empty user id, label or item id, or a user with
two labels, is an error naming the file, row and column; users the stream does not have (too short,
or never seen) and items outside its catalogue are counted and left out, so a label file made
for a whole user base serves a stream of part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from ..config import LabelFile, ProfileSource
from ..errors import DataError
from .diagnose import explain_engine_error
from .ingest import first_repeated_user
from .readers import profile_scan


@dataclass
class LabelRows:
    users: np.ndarray  # object: external user ids, in file order
    values: np.ndarray  # object: labels or item ids, as text


def read_label_file(lf: LabelFile, column: str, one_per_user: bool) -> LabelRows:
    scan = profile_scan(
        ProfileSource(path=lf.path, format=lf.format, user=lf.user, fields=[column], encoding=lf.encoding)
    )
    con = duckdb.connect()
    try:
        src = scan.typed_sql({column: "VARCHAR"})
        con.execute(
            f"CREATE TABLE lab AS SELECT CAST({scan.col(lf.user)} AS VARCHAR) AS u, "
            f"CAST({scan.col(column)} AS VARCHAR) AS v FROM {src}"
        )
    except duckdb.Error as e:
        raise explain_engine_error(scan, e) from None
    for col, name in (("u", lf.user), ("v", column)):
        empty = con.execute(f"SELECT rowid + 1 FROM lab WHERE {col} IS NULL OR trim({col}) = '' LIMIT 1").fetchone()
        if empty:
            raise DataError(
                f"empty {'user id' if col == 'u' else 'value'}", file=scan.file, row=int(empty[0]), field=name
            )
    if one_per_user:
        dup = first_repeated_user(con, "lab")
        if dup is not None:
            raise DataError(
                f"user '{dup[0]}' has more than one label (rows {', '.join(map(str, dup[1][:5]))})",
                file=scan.file,
                field=lf.user,
                expected="one row per user",
            )
    t = con.sql("SELECT u, v FROM lab ORDER BY rowid").to_arrow_table()
    return LabelRows(
        t.column("u").to_numpy(zero_copy_only=False).astype(object),
        t.column("v").to_numpy(zero_copy_only=False).astype(object),
    )


def file_task_rows(
    lf: LabelFile, kind: str, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(stream user index per kept row, its value: the label text, or the item index for item_rec)
    and counts for the manifest. `users`: the stream's external user ids; `items`: its external item
    ids (index 0 = padding)."""
    item_rec = kind == "item_rec"
    rows = read_label_file(lf, lf.item if item_rec else lf.label, one_per_user=not item_rec)
    user_index = {str(u): i for i, u in enumerate(users)}
    u = np.array([user_index.get(x, -1) for x in rows.users], dtype=np.int64)
    note = {"label_file": lf.path, "rows": len(u), "rows_of_users_not_in_stream": int((u < 0).sum())}
    if item_rec:
        item_index = {str(x): i for i, x in enumerate(items) if i}
        v = np.array([item_index.get(x, -1) for x in rows.values], dtype=np.int64)
        note["rows_of_items_not_in_catalogue"] = int(((v < 0) & (u >= 0)).sum())
        keep = (u >= 0) & (v >= 0)
        return u[keep], v[keep], note
    keep = u >= 0
    return u[keep], rows.values[keep], note
