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
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..config import SourceConfig
from ..errors import DataError
from ..fsutil import atomic_directory, sha256_bytes, write_json_atomic
from .readers import Scan, interaction_scan

STORE_VERSION = 1


def connect(tmp: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB database file in `tmp`, with a memory cap so large inputs spill to disk."""
    con = duckdb.connect(str(tmp / "ingest.duckdb"))
    limit = memory_limit or os.environ.get("LIFELONGREC_DUCKDB_MEMORY", "1GB")
    _sql(con, f"SET memory_limit='{limit}'")
    _sql(con, f"SET temp_directory='{tmp / 'spill'}'")
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


# ------------------------------------------------------------------ diagnosing bad rows


def _all_varchar(scan: Scan) -> str:
    if scan.sql.startswith("read_csv("):
        return scan.sql[:-1] + ", all_varchar=true)"
    return scan.sql


def _explain_failure(con: duckdb.DuckDBPyConnection, scan: Scan, numeric: list[str], err: Exception) -> DataError:
    """Find the first row that made the scan fail and say what is wrong with it."""
    src = _all_varchar(scan)
    try:
        for name in numeric:
            c = scan.col(name)
            row = _sql(
                con,
                f"SELECT n, v FROM (SELECT row_number() OVER () AS n, CAST({c} AS VARCHAR) AS v FROM {src}) "
                f"WHERE v IS NOT NULL AND TRY_CAST(v AS DOUBLE) IS NULL ORDER BY n LIMIT 1",
            )
            if row is not None:
                n, v = row
                raw_names = [h.split(":", 1)[0] for h in scan.header]
                if v == name or v in scan.header or v in raw_names:
                    return DataError(
                        f"value '{v}' repeats the header (a duplicated header line?)",
                        file=scan.file,
                        row=n,
                        field=name,
                        expected="a number",
                    )
                return DataError(f"value '{v}' is not a number", file=scan.file, row=n, field=name, expected="a number")
    except duckdb.Error as e2:
        err = e2
    msg = str(err).strip().splitlines()
    return DataError("could not be read: " + " ".join(m.strip() for m in msg[:6]), file=scan.file)


def _check_nulls(con: duckdb.DuckDBPyConnection, scan: Scan, cols: dict[str, str]) -> None:
    for name, expr in cols.items():
        row = _sql(con, f"SELECT rowid + 1 FROM raw WHERE {expr} IS NULL LIMIT 1")
        if row is not None:
            raise DataError(
                "empty value", file=scan.file, row=int(row[0]), field=name, expected=f"a {name} on every row"
            )


# ------------------------------------------------------------------ the store


@dataclass
class InteractionStore:
    """User sequences in CSR form: the events of user u are [offsets[u], offsets[u+1])."""

    users: np.ndarray  # external user ids (str), index = user index
    items: np.ndarray  # external item ids (str), index 0 = padding ("")
    offsets: np.ndarray  # int64 [n_users + 1]
    item_seq: np.ndarray  # int32 [n_events], item index per event
    timestamps: np.ndarray  # float64 [n_events]
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
        return len(self.item_seq)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def vocab_hash(items: np.ndarray) -> str:
    """The identity of an item vocabulary (external ids, index 0 = padding): artifacts and prepared streams
    are matched by it, so every place that names a vocabulary must hash it here."""
    return sha256_bytes("\n".join(items[1:].tolist()).encode("utf-8"))


def _value_exprs(scan: Scan) -> list[str]:
    return [f"CAST({scan.col(v)} AS FLOAT) AS v_{i}" for i, v in enumerate(scan.values)]


def _timestamp_expr(con: duckdb.DuckDBPyConnection, scan: Scan) -> str:
    if scan.timestamp is None:
        return "NULL::DOUBLE"  # file order is event order; the row breaks every tie
    kind = _sql(con, f"SELECT typeof({scan.col(scan.timestamp)}) FROM {scan.sql} LIMIT 1")
    if kind and kind[0].startswith(("TIMESTAMP", "DATE")):
        return f"epoch({scan.col(scan.timestamp)})::DOUBLE"
    return f"CAST({scan.col(scan.timestamp)} AS DOUBLE)"


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
    with (
        tempfile.TemporaryDirectory(prefix="lifelongrec-ingest-") as tmpd,
        atomic_directory(out) as dst,
        _progress(scan) as bar,
    ):
        bar.set_postfix_str("read")
        tmp = Path(tmpd)
        con = connect(tmp, memory_limit)
        numeric = ([scan.timestamp] if scan.timestamp else []) + scan.values
        row = scan.col(scan.row_column) if scan.row_column else "NULL::BIGINT"
        assert scan.item is not None  # an interaction scan always names its item column
        try:
            ts = _timestamp_expr(con, scan)
            label_exprs = [f"CAST({scan.col(c)} AS VARCHAR) AS l_{i}" for i, c in enumerate(scan.labels)]
            _sql(
                con,
                "CREATE TABLE raw AS SELECT "
                + ", ".join(
                    [
                        f"CAST({scan.col(scan.user)} AS VARCHAR) AS u",
                        f"CAST({scan.col(scan.item)} AS VARCHAR) AS i",
                        f"{ts} AS t",
                        f"{row} AS r",
                        *_value_exprs(scan),
                        *label_exprs,
                    ]
                )
                + f" FROM {scan.sql}",
            )
        except duckdb.Error as e:
            raise _explain_failure(con, scan, numeric, e) from None
        _check_nulls(con, scan, {"user": "u", "item": "i", **({"timestamp": "t"} if scan.timestamp else {})})
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
            f"FROM raw JOIN uvoc USING (u) JOIN ivoc USING (i) ORDER BY uidx, t, {tie}) "
            f"TO '{dst / 'interactions.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)",
        )
        bar.update()
        bar.set_postfix_str("users and labels")
        # Timestamp ties with the previous event of the same user: resolved by file row, reported.
        ties = 0
        if scan.timestamp is not None:
            # Each group of k events sharing (user, timestamp) holds k - 1 ties: n - #distinct pairs.
            ties = n - _value(con, "SELECT count(*) FROM (SELECT DISTINCT u, t FROM raw)")
        counts = con.sql(
            "SELECT uvoc.uidx, uvoc.u, count(raw.u) FROM uvoc LEFT JOIN raw USING (u) GROUP BY ALL ORDER BY uvoc.uidx"
        ).to_arrow_table()
        label_tables = {}
        if scan.labels:  # per-user labels in the interaction file: the first non-empty value in file order
            sel = ", ".join(
                f'arg_min(l_{k}, {tie}) FILTER (WHERE l_{k} IS NOT NULL) AS "{c}"' for k, c in enumerate(scan.labels)
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


def _ingest_profile(con: duckdb.DuckDBPyConnection, p: Scan) -> tuple[pa.Table, dict]:
    labels = ", ".join(f'CAST({p.col(c)} AS VARCHAR) AS "{c}"' for c in p.labels)
    try:
        _sql(con, f"CREATE TABLE prof AS SELECT CAST({p.col(p.user)} AS VARCHAR) AS u, {labels} FROM {p.sql}")
    except duckdb.Error as e:
        raise _explain_failure(con, p, [], e) from None
    empty = _sql(con, "SELECT rowid + 1 FROM prof WHERE u IS NULL LIMIT 1")
    if empty:
        raise DataError("empty user id", file=p.file, row=int(empty[0]), field=p.user)
    dup = _sql(
        con,
        "SELECT u, list(rowid + 1 ORDER BY rowid) FROM prof GROUP BY u HAVING count(*) > 1 ORDER BY min(rowid) LIMIT 1",
    )
    if dup is not None:
        raise DataError(
            f"user '{dup[0]}' appears more than once (rows {', '.join(map(str, dup[1][:5]))})",
            file=p.file,
            field=p.user,
            expected="one row per user",
        )
    cols = ", ".join(f'prof."{c}"' for c in p.labels)
    table = con.sql(f"SELECT uvoc.uidx, {cols} FROM prof JOIN uvoc USING (u) ORDER BY 1").to_arrow_table()
    unmatched = _value(con, "SELECT count(*) FROM prof ANTI JOIN uvoc USING (u)")
    return table, {
        "profile_file": str(p.file),
        "profile_rows": _value(con, "SELECT count(*) FROM prof"),
        "profile_users_without_events": int(unmatched),
    }


def load_store(path: Path) -> InteractionStore:
    meta = json.loads((path / "store.json").read_text())
    inter = pq.read_table(path / "interactions.parquet")
    users = pq.read_table(path / "users.parquet")
    items = pq.read_table(path / "items.parquet").column("item").to_numpy(zero_copy_only=False)
    counts = users.column("events").to_numpy()
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = {
        name: inter.column(f"v_{k}").to_numpy().astype(np.float32, copy=False) for k, name in enumerate(meta["values"])
    }
    labels = {
        c.split(":", 1)[1]: users.column(c).to_numpy(zero_copy_only=False)
        for c in users.column_names
        if c.startswith("label:")
    }
    ts = inter.column("timestamp").to_numpy()
    return InteractionStore(
        users=users.column("user").to_numpy(zero_copy_only=False),
        items=np.concatenate([np.array([""], dtype=object), items.astype(object)]),
        offsets=offsets,
        item_seq=inter.column("item").to_numpy().astype(np.int32, copy=False),
        timestamps=np.nan_to_num(ts.astype(np.float64), nan=0.0) if ts.dtype != np.float64 else ts,
        values=values,
        labels=labels,
        meta=meta,
    )


def source_fingerprint(source: SourceConfig, hashes: dict[str, str], scan: Scan, profile: Scan | None) -> str:
    """Identifies an ingested store: the source config plus file identities (pinned hashes when known,
    else size and modification time, so an edited file is ingested again)."""
    ident = {"config": source.model_dump(mode="json"), "hashes": hashes, "store_version": STORE_VERSION}
    for s in (scan, profile):
        if s is not None and not hashes:
            st = s.file.stat()
            ident[str(s.file)] = [st.st_size, st.st_mtime_ns]
    return sha256_bytes(json.dumps(ident, sort_keys=True).encode())[:16]


def open_store(source: SourceConfig, cache: Path, memory_limit: str | None = None) -> InteractionStore:
    """Ingest the source once into `cache/stores/<fingerprint>` and load it."""
    scan, profile, hashes = interaction_scan(source)
    fp = source_fingerprint(source, hashes, scan, profile)
    path = cache / "stores" / fp
    if not (path / "store.json").is_file():
        ingest(scan, profile, path, memory_limit, extra_meta={"fingerprint": fp, "source_hashes": hashes})
    return load_store(path)
