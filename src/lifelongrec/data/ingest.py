"""Ingestion into the canonical store (see store.py): the source is read inside DuckDB, out of core (a
memory limit plus a spill directory), every value checked with an error that names the file, row and
column, and the result written as Parquet sorted by (user, timestamp, file row)."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..fsutil import atomic_directory, write_json_atomic
from .diagnose import explain_engine_error
from .readers import Scan, ident

STORE_VERSION = 1  # the layout of a store folder; load_store refuses another


def sql_string(value: str | Path) -> str:
    """A SQL string literal (single quotes doubled): paths and settings pasted into DuckDB statements
    that take no parameters (SET, COPY ... TO), whatever characters they hold."""
    return "'" + str(value).replace("'", "''") + "'"


def connect(tmp: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB database file in `tmp`, with a memory cap so large inputs spill to disk."""
    con = duckdb.connect(str(tmp / "ingest.duckdb"))
    limit = memory_limit or os.environ.get("LIFELONGREC_DUCKDB_MEMORY", "1GB")
    try:
        _sql(con, f"SET memory_limit={sql_string(limit)}")
    except duckdb.Error:
        con.close()
        raise ConfigError(
            f"LIFELONGREC_DUCKDB_MEMORY={limit!r}: not a memory size DuckDB accepts (expected e.g. 1GB or 512MB)"
        ) from None
    _sql(con, f"SET temp_directory={sql_string(tmp / 'spill')}")
    _sql(con, f"SET threads={max(1, min(os.cpu_count() or 1, 8))}")
    _sql(con, "SET preserve_insertion_order=true")  # rowid = file row; the tie-breaker depends on it
    return con


def _sql(con: duckdb.DuckDBPyConnection, sql: str) -> tuple | None:
    """First row of a query, or None. Fetches everything: DuckDB refuses new work on a connection
    while a result is still open."""
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def _value(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The first value of a query that always returns a row (an aggregate such as count(*))."""
    row = _sql(con, sql)
    assert row is not None
    return row[0]


# ------------------------------------------------------------------ numbers, checked


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _column_types(con: duckdb.DuckDBPyConnection, scan: Scan) -> dict[str, str]:
    """DuckDB's type of every column of the scan (for a text file: what its sniffer guessed), by clean name."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {scan.sql}").fetchall()
    return {scan.rename.get(r[0], r[0]): str(r[1]) for r in rows}


def _is_time(kind: str) -> bool:
    return kind.startswith(("TIMESTAMP", "DATE"))


def _read_types(scan: Scan, sniffed: dict[str, str]) -> dict[str, str]:
    """How a text file's columns are read: numbers as text that the store converts and checks itself
    (DuckDB's guessed type rounds a later 1.5 in a column of integers to 2, silently), dates and booleans
    as guessed, labels as text (a zip code 01234 stays 01234)."""
    types = {c: "VARCHAR" for c in scan.labels if c not in scan.absent}
    for c in ([scan.timestamp] if scan.timestamp else []) + scan.read_values():
        kind = sniffed.get(c, "VARCHAR")
        types[c] = kind if _is_time(kind) or kind == "BOOLEAN" else "VARCHAR"
    return types


def _number_exprs(col: str, kind: str) -> tuple[str, str]:
    """(the value as DOUBLE or NULL, whether the row holds a value at all) for a column of this type."""
    if kind == "VARCHAR":
        text = f"nullif(trim({col}), '')"
        return f"TRY_CAST({text} AS DOUBLE)", f"({text} IS NOT NULL)"
    if _is_time(kind):
        return f"CASE WHEN isfinite({col}) THEN epoch({col})::DOUBLE END", f"({col} IS NOT NULL)"
    return f"TRY_CAST({col} AS DOUBLE)", f"({col} IS NOT NULL)"


def _bad_value(
    con: duckdb.DuckDBPyConnection, scan: Scan, read_sql: str, name: str, row: int, is_value: bool
) -> DataError:
    """What is wrong with the value of column `name` at data row `row` (1-based), from its text."""
    got = _sql(con, f"SELECT CAST({scan.col(name)} AS VARCHAR) FROM {read_sql} LIMIT 1 OFFSET {row - 1}")
    v = "" if got is None or got[0] is None else str(got[0])
    raw_names = [h.split(":", 1)[0] for h in scan.header]
    if v == name or v in scan.header or v in raw_names:
        return DataError(
            f"value '{v}' repeats the header (a duplicated header line?)",
            file=scan.file,
            row=row,
            field=name,
            expected="a number",
        )
    try:
        x = float(v)
    except ValueError:
        return DataError(f"value '{v}' is not a number", file=scan.file, row=row, field=name, expected="a number")
    if not math.isfinite(x):
        return DataError(
            f"value '{v}' is not a finite number",
            file=scan.file,
            row=row,
            field=name,
            expected="a finite number (NaN and infinity are refused; leave a missing value empty)"
            if is_value
            else "a finite number",
        )
    if is_value and abs(x) > FLOAT32_MAX:
        return DataError(
            f"value '{v}' is out of range",
            file=scan.file,
            row=row,
            field=name,
            expected=f"a number within +-{FLOAT32_MAX:.4g} (values are stored as 32-bit floats)",
        )
    return DataError(f"value '{v}' could not be read as a number", file=scan.file, row=row, field=name)


# ------------------------------------------------------------------ the store


def _raw_select(scan: Scan, types: dict[str, str]) -> tuple[str, list[str]]:
    """The columns of the `raw` table: user, item, timestamp, file row, values, labels, and `bad`, the
    index (in `numeric`) of the first number on the row that is not a finite number (values: that does
    not fit a 32-bit float), NULL when the row is fine. Returns the select list and `numeric`."""
    assert scan.item is not None  # an interaction scan always names its item column
    numeric = ([scan.timestamp] if scan.timestamp else []) + scan.read_values()
    conv = {c: _number_exprs(scan.col(c), types.get(c, "VARCHAR")) for c in numeric}
    ts = "NULL::DOUBLE" if scan.timestamp is None else conv[scan.timestamp][0]  # no timestamp: file order
    # Integer timestamps beyond 2^53 (nanoseconds since 1970) are not exact as doubles: two of them can
    # round to one double, and the file row would then decide their order. `x` keeps them exact for the sort.
    exact = "NULL::BIGINT"
    if scan.timestamp is not None and not _is_time(types.get(scan.timestamp, "VARCHAR")):
        text = scan.col(scan.timestamp)
        if types.get(scan.timestamp, "VARCHAR") == "VARCHAR":
            text = f"trim({text})"
        exact = f"CASE WHEN abs({ts}) >= 9007199254740992 THEN TRY_CAST({text} AS BIGINT) END"
    checks = []
    for k, c in enumerate(numeric):
        value, present = conv[c]
        is_value = not (scan.timestamp is not None and k == 0)
        fits = f" OR TRY_CAST({value} AS FLOAT) IS NULL" if is_value else ""
        checks.append(f"WHEN {present} AND (NOT coalesce(isfinite({value}), false){fits}) THEN {k}")
    bad = f"CASE {' '.join(checks)} END" if checks else "NULL::INTEGER"

    def value_expr(v: str) -> str:
        if v in scan.constants:
            return f"{float(scan.constants[v])!r}::FLOAT"
        return "NULL::FLOAT" if v in scan.absent else f"TRY_CAST({conv[v][0]} AS FLOAT)"

    item = f"CAST({scan.col(scan.item)} AS VARCHAR)"
    cols = [
        f"CAST({scan.col(scan.user)} AS VARCHAR) AS u",
        f"{sql_string(scan.item_prefix)} || {item} AS i" if scan.item_prefix else f"{item} AS i",
        f"{ts} AS t",
        f"{scan.col(scan.row_column) if scan.row_column else 'NULL::BIGINT'} AS r",
        f"{exact} AS x",
        *[f"{value_expr(v)} AS v_{i}" for i, v in enumerate(scan.values)],
        *[
            f"NULL::VARCHAR AS l_{i}" if c in scan.absent else f"CAST({scan.col(c)} AS VARCHAR) AS l_{i}"
            for i, c in enumerate(scan.labels)
        ],
        f"{bad} AS bad",
    ]
    return ", ".join(cols), numeric


def _read_part(con: duckdb.DuckDBPyConnection, scan: Scan, first: bool) -> None:
    """Append one file's rows to the `raw` table (created by the first), checking them: a number that is
    not one, an empty id; errors name this file and its own row."""
    base = 0 if first else _value(con, "SELECT count(*) FROM raw")
    try:
        sniffed = _column_types(con, scan)  # Parquet: the file's types; text: DuckDB's guesses
        types = sniffed if scan.csv is None else _read_types(scan, sniffed)
        read_sql = scan.typed_sql(types)
        select, numeric = _raw_select(scan, types)
        _sql(con, f"{'CREATE TABLE raw AS' if first else 'INSERT INTO raw'} SELECT {select} FROM {read_sql}")
    except duckdb.Error as e:
        raise explain_engine_error(scan, e) from None
    row = f"coalesce(r, rowid - {base}) + 1"  # the file's own row (Parquet: its row column)
    first_bad = _sql(con, f"SELECT {row}, bad FROM raw WHERE bad IS NOT NULL AND rowid >= {base} ORDER BY 1 LIMIT 1")
    if first_bad is not None:
        n_row, k = int(first_bad[0]), int(first_bad[1])
        is_value = not (scan.timestamp is not None and k == 0)
        raise _bad_value(con, scan, read_sql, numeric[k], n_row, is_value)
    cols = {"user": "u", "item": "i", **({"timestamp": "t"} if scan.timestamp else {})}
    for name, expr in cols.items():
        got = _sql(con, f"SELECT min({row}) FROM raw WHERE {expr} IS NULL AND rowid >= {base}")
        if got is not None and got[0] is not None:
            raise DataError(
                "empty value", file=scan.file, row=int(got[0]), field=name, expected=f"a {name} on every row"
            )


def _progress(scan: Scan) -> tqdm:
    """A bar over the ingestion steps (each is one DuckDB query, minutes on a large file); silent unless
    stderr is a terminal, so tests and logs see nothing."""
    return tqdm(total=5, desc=f"ingest {scan.file.name}", unit="step", leave=False, disable=not sys.stderr.isatty())


def ingest(
    scan: Scan,
    profile: Scan | None,
    out: Path,
    memory_limit: str | None = None,
    extra_meta: dict | None = None,
) -> None:
    """Read `scan` (and `profile`) out of core and write the store to `out` atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        # Next to the output (DuckDB spills there; /tmp may be small): a dot-named .tmp folder, so the
        # cache's clean_stale_temporaries removes it after a kill.
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".ingest-", suffix=".tmp") as tmpd,
        atomic_directory(out) as dst,
        _progress(scan) as bar,
    ):
        bar.set_postfix_str("read")
        tmp = Path(tmpd)
        con = connect(tmp, memory_limit)
        try:
            for k, part in enumerate(scan.parts or [scan]):  # one file, or several read as one
                _read_part(con, part, first=k == 0)
        except BaseException:
            con.close()
            raise
        n = _value(con, "SELECT count(*) FROM raw")
        if n == 0:
            raise DataError("no data rows", file=scan.file, expected="at least one interaction")
        bar.update()
        bar.set_postfix_str("vocabularies")
        # Vocabularies: numeric-looking ids in numeric order, then the rest as text. Stable for a file.
        order = "ORDER BY TRY_CAST({0} AS HUGEINT) NULLS LAST, {0}"
        _sql(
            con,
            f"CREATE TABLE uvoc AS SELECT u, row_number() OVER ({order.format('u')}) - 1 AS uidx "
            "FROM (SELECT DISTINCT u FROM raw)",
        )
        _sql(
            con,
            f"CREATE TABLE ivoc AS SELECT i, row_number() OVER ({order.format('i')}) AS iidx "
            "FROM (SELECT DISTINCT i FROM raw)",
        )
        bar.update()
        bar.set_postfix_str("sort")
        tie = "coalesce(raw.r, raw.rowid)"
        vcols = "".join(f", v_{k}" for k in range(len(scan.values)))
        _sql(
            con,
            f"COPY (SELECT uidx::INTEGER AS user, iidx::INTEGER AS item, t AS timestamp{vcols} "
            f"FROM raw JOIN uvoc USING (u) JOIN ivoc USING (i) ORDER BY uidx, t, x, {tie}) "
            f"TO {sql_string(dst / 'interactions.parquet')} (FORMAT parquet, ROW_GROUP_SIZE 1000000)",
        )
        bar.update()
        bar.set_postfix_str("users and labels")
        # Timestamp ties with the previous event of the same user: resolved by file row, reported.
        ties = 0
        if scan.timestamp is not None:
            # Each group of k events sharing (user, timestamp) holds k - 1 ties: n - #distinct pairs.
            ties = n - _value(con, "SELECT count(*) FROM (SELECT DISTINCT u, t, x FROM raw)")
        counts = con.sql(
            "SELECT uvoc.uidx, uvoc.u, count(raw.u) FROM uvoc LEFT JOIN raw USING (u) GROUP BY ALL ORDER BY uvoc.uidx"
        ).to_arrow_table()
        label_tables = {}
        if scan.labels:  # per-user labels in the interaction file: the first non-empty value in file order
            sel = ", ".join(
                f"arg_min(l_{k}, {tie}) FILTER (WHERE l_{k} IS NOT NULL) AS {ident(c)}"
                for k, c in enumerate(scan.labels)
            )
            label_tables["interactions"] = con.sql(
                f"SELECT uvoc.uidx, {sel} FROM raw JOIN uvoc USING (u) GROUP BY uvoc.uidx ORDER BY 1"
            ).to_arrow_table()
        profile_meta: dict = {}
        if profile is not None:
            label_tables["profile"], profile_meta = _ingest_profile(con, profile)
        users = pa.table({"user": counts.column(1).cast(pa.string()), "events": counts.column(2).cast(pa.int64())})
        for t in label_tables.values():
            for name in t.column_names[1:]:
                full = np.full(len(users), None, dtype=object)
                idx = t.column(0).to_numpy()
                full[idx] = t.column(name).to_pylist()
                users = users.append_column(f"label:{name}", pa.array(full.tolist(), pa.string()))
        bar.update()
        bar.set_postfix_str("write")
        items = con.sql("SELECT i AS item FROM ivoc ORDER BY iidx").to_arrow_table()
        pq.write_table(users, dst / "users.parquet")
        pq.write_table(items, dst / "items.parquet")
        meta = {
            "store_version": STORE_VERSION,
            "file": str(scan.file),
            "events": int(n),
            "users": len(users),
            "items": items.num_rows,
            "timestamp_ties": int(ties),
            "order": "timestamp, then file row" if scan.timestamp else "file row (no timestamp column)",
            "values": list(scan.values),
            "labels": [n for t in label_tables.values() for n in t.column_names[1:]],
            **profile_meta,
            **(extra_meta or {}),
        }
        write_json_atomic(dst / "store.json", meta)
        con.close()
        bar.update()


def first_repeated_user(con: duckdb.DuckDBPyConnection, table: str) -> tuple | None:
    """(user, its rows, 1-based) of the first user in column `u` of `table` with more than one row."""
    return _sql(
        con,
        f"SELECT u, list(rowid + 1 ORDER BY rowid) FROM {table} GROUP BY u HAVING count(*) > 1 "
        "ORDER BY min(rowid) LIMIT 1",
    )


def _ingest_profile(con: duckdb.DuckDBPyConnection, p: Scan) -> tuple[pa.Table, dict]:
    labels = "".join(f", CAST({p.col(c)} AS VARCHAR) AS {ident(c)}" for c in p.labels)
    try:
        # labels as text, as written (a sniffed number type would turn 01234 into 1234)
        src = p.typed_sql({c: "VARCHAR" for c in p.labels})
        _sql(con, f"CREATE TABLE prof AS SELECT CAST({p.col(p.user)} AS VARCHAR) AS u{labels} FROM {src}")
    except duckdb.Error as e:
        raise explain_engine_error(p, e) from None
    empty = _sql(con, "SELECT rowid + 1 FROM prof WHERE u IS NULL LIMIT 1")
    if empty:
        raise DataError("empty user id", file=p.file, row=int(empty[0]), field=p.user)
    dup = first_repeated_user(con, "prof")
    if dup is not None:
        raise DataError(
            f"user '{dup[0]}' appears more than once (rows {', '.join(map(str, dup[1][:5]))})",
            file=p.file,
            field=p.user,
            expected="one row per user",
        )
    cols = "".join(f", prof.{ident(c)}" for c in p.labels)
    table = con.sql(f"SELECT uvoc.uidx{cols} FROM prof JOIN uvoc USING (u) ORDER BY 1").to_arrow_table()
    unmatched = _value(con, "SELECT count(*) FROM prof ANTI JOIN uvoc USING (u)")
    return table, {
        "profile_file": str(p.file),
        "profile_rows": _value(con, "SELECT count(*) FROM prof"),
        "profile_users_without_events": int(unmatched),
    }
