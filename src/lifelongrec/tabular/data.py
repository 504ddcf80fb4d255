"""A table of rows -> categorical field ids, yes/no labels per task and a fixed split.

Every input column becomes one categorical field: its values seen among the training rows are ids
1..n (in sorted order); a missing value (empty, or listed in `missing`) and a value never seen in
training are id 0, the unknown bucket, and the rows that needed it are counted per split and field.
A numeric column is cut into quantile bins on the training rows (MPT-Rec's Census setting feeds
dense features raw; here every input is a field). Labels are 1 where the task's column holds one of
its `positive` values and 0 elsewhere; a missing label is an error naming its row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import DataError
from .config import TabularConfig

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = ("train", "valid", "test")


@dataclass
class TabularData:
    fields: np.ndarray  # [n, F] int64, 0 = missing or unseen in training
    names: list[str]  # the input columns, in field order
    cardinalities: list[int]  # ids per field, the unknown bucket included
    labels: dict[str, np.ndarray]  # task -> [n] int64 in {0, 1}
    split: np.ndarray  # [n] int8
    file: str
    unknown: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> split -> rows in bucket 0

    def rows(self, split: int) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def read_table(cfg: TabularConfig) -> tuple[pa.Table, str]:
    if cfg.source.dataset is not None:
        import pyarrow.parquet as pq

        from ..data.sources import fetch

        got = fetch(cfg.source.dataset, quiet=False)
        assert got.table is not None  # a tabular dataset names its table
        return pq.read_table(got.table), str(got.table)
    path = Path(str(cfg.source.path)).expanduser()
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        if cfg.source.format == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path), str(path)
        import pyarrow.csv as pcsv

        # Every column as text: ids stay as written; numeric columns are parsed below, row by row.
        opts = pcsv.ConvertOptions(strings_can_be_null=False, auto_dict_encode=False)
        with pcsv.open_csv(path) as reader:  # the header, from the first block only
            names = reader.schema.names
        opts.column_types = {c: pa.string() for c in names}
        return pcsv.read_csv(path, convert_options=opts), str(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"cannot be read as {cfg.source.format} ({str(e).splitlines()[0]})", file=path) from None


def _text(table: pa.Table, column: str) -> list[str | None]:
    return [None if v is None else str(v) for v in table.column(column).to_pylist()]


def assign_split(n: int, cfg: TabularConfig) -> np.ndarray:
    s = cfg.split
    rng = np.random.default_rng(s.seed)
    out = np.empty(n, dtype=np.int8)
    if s.mode == "train_rows":
        assert s.train_rows is not None
        a, b = s.train_rows
        if b > n:
            raise DataError(f"split.train_rows ends at row {b:,} but the table has {n:,} rows")
        out[:] = TEST
        out[a:b] = TRAIN
        rest = np.flatnonzero(out != TRAIN)
        out[rng.permutation(rest)[: len(rest) // 2]] = VALID
        return out
    perm = rng.permutation(n)
    n_tr, n_va = int(round(n * s.fractions[0])), int(round(n * s.fractions[1]))
    out[perm[:n_tr]], out[perm[n_tr : n_tr + n_va]], out[perm[n_tr + n_va :]] = TRAIN, VALID, TEST
    return out


def _categorical(values: list[str | None], missing: set[str], split: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(ids, cardinality, rows that fell in the unknown bucket although a value was present)."""
    present = np.array([v is not None and v.strip() != "" and v not in missing for v in values])
    vocab = sorted({str(v) for v, p, s in zip(values, present, split) if p and s == TRAIN})
    index = {v: i + 1 for i, v in enumerate(vocab)}
    ids = np.array([index.get(str(v), 0) if p else 0 for v, p in zip(values, present)], dtype=np.int64)
    return ids, len(vocab) + 1, present & (ids == 0)


def _numeric(
    values: list[str | None], missing: set[str], split: np.ndarray, bins: int, column: str, file: str
) -> tuple[np.ndarray, int]:
    x = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or v.strip() == "" or v in missing:
            continue
        try:
            x[i] = float(v)
        except ValueError:
            raise DataError(f"value '{v}' is not a number", file=file, row=i + 1, field=column) from None
        if not math.isfinite(x[i]):
            raise DataError(f"value '{v}' is not a finite number", file=file, row=i + 1, field=column)
    train = x[(split == TRAIN) & ~np.isnan(x)]
    edges = np.unique(np.quantile(train, np.linspace(0, 1, bins + 1)[1:-1])) if len(train) else np.zeros(0)
    ids = np.where(np.isnan(x), 0, np.searchsorted(edges, np.nan_to_num(x), side="right") + 1)
    return ids.astype(np.int64), len(edges) + 2


def build_tabular(cfg: TabularConfig) -> TabularData:
    table, file = read_table(cfg)
    needed = {t.column: f"the label of task {t.name}" for t in cfg.tasks}
    needed.update({c: "an input column" for c in [*cfg.categorical, *cfg.numeric.columns]})
    for col, role in needed.items():
        if col not in table.column_names:
            raise DataError(
                f"missing column '{col}' ({role}); the table has: {', '.join(table.column_names)}",
                file=file,
                expected="every column the config names",
            )
    n = table.num_rows
    if n == 0:
        raise DataError("no rows", file=file)
    split = assign_split(n, cfg)
    missing = set(cfg.missing)
    labels = {}
    for t in cfg.tasks:
        vals = _text(table, t.column)
        bad = next((i for i, v in enumerate(vals) if v is None or v.strip() == "" or v in missing), None)
        if bad is not None:
            raise DataError(f"task {t.name}: missing label", file=file, row=bad + 1, field=t.column)
        y = np.isin(np.array(vals, dtype=object), t.positive).astype(np.int64)
        tr = y[split == TRAIN]
        if tr.min(initial=1) == tr.max(initial=0):
            raise DataError(
                f"task {t.name}: every training row has label {int(tr[0]) if len(tr) else '-'} "
                f"(positive values {t.positive})",
                file=file,
                field=t.column,
                expected="both classes among the training rows; check `positive`",
            )
        labels[t.name] = y
    cols, cards, unknown = [], [], {}
    for c in cfg.categorical:
        ids, card, unseen = _categorical(_text(table, c), missing, split)
        cols.append(ids)
        cards.append(card)
        unknown[c] = {SPLITS[s]: int((unseen & (split == s)).sum()) for s in (TRAIN, VALID, TEST)}
    for c in cfg.numeric.columns:
        ids, card = _numeric(_text(table, c), missing, split, cfg.numeric.bins, c, file)
        cols.append(ids)
        cards.append(card)
    return TabularData(
        np.stack(cols, 1),
        [*cfg.categorical, *cfg.numeric.columns],
        cards,
        labels,
        split,
        file,
        {k: v for k, v in unknown.items() if sum(v.values())},
    )
