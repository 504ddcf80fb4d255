"""File formats -> DuckDB scans with standard column names.

Every reader answers one question: "which DuckDB table expression reads this file, and which of its
columns is the user, the item, the timestamp, ...". The store then ingests that scan out of core, so
no reader ever loads a whole file into Python. Header problems (missing column, duplicate header,
wrong separator) are caught here, from the first line, before any scan runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ENCODINGS, Columns, ProfileSource, SourceConfig
from ..errors import ConfigError, DataError
from .sources import fetch
from .textfile import COMMON_SEPS, check_header, first_line, require

# The longest line read_csv accepts unless source.max_line_size says otherwise (DuckDB's own default,
# passed explicitly so that the limit our messages name is the one DuckDB applies, in every version).
DUCKDB_MAX_LINE_SIZE = 2_000_000
# Parquet column types that are not one value per row: never read as ids, numbers or labels.
_NESTED = ("list", "large_list", "fixed_size_list", "struct", "map", "dictionary<values=list")


@dataclass
class CsvRead:
    """The arguments of one DuckDB read_csv call, so the store can re-read the file with other column
    types (numbers as text, checked by the store; everything as text, to show a bad value)."""

    path: Path
    sep: str
    header: bool
    encoding: str = "utf-8"
    names: list[str] | None = None
    max_line_size: int | None = None

    def sql(self, types: dict[str, str] | None = None, all_varchar: bool = False) -> str:
        opts = [
            f"sep={_q(self.sep)}",
            f"header={'true' if self.header else 'false'}",
            # The dialect is set, not sniffed: a sniffed comment character drops rows starting with '#',
            # sniffed skip_rows drops the first rows, a sniffed backslash escape rewrites values; silently.
            "quote='\"'",
            "escape='\"'",
            "comment=''",
            "skip=0",
            f"encoding={_q(self.encoding)}",
        ]
        opts.append(f"max_line_size={int(self.max_line_size or DUCKDB_MAX_LINE_SIZE)}")
        if self.names:
            opts.append("names=[" + ", ".join(_q(n) for n in self.names) + "]")
        if all_varchar:
            opts.append("all_varchar=true")
        elif types:
            opts.append("types={" + ", ".join(f"{_q(c)}: {_q(t)}" for c, t in types.items()) + "}")
        return f"read_csv({_q(self.path)}, {', '.join(opts)})"


@dataclass
class Scan:
    """A DuckDB table expression plus what its columns mean."""

    file: Path
    sql: str  # e.g. read_csv('x.csv', sep=',', header=true)
    user: str
    item: str | None = None
    timestamp: str | None = None  # None: file order is event order (Tenrec)
    values: list[str] = field(default_factory=list)  # numeric per-event columns (rating first if any)
    labels: list[str] = field(default_factory=list)  # per-user label columns
    row_column: str | None = None  # a column holding the file row (Parquet), else insertion order
    rename: dict[str, str] = field(default_factory=dict)  # raw header -> clean name (RecBole 'a:token')
    header: list[str] = field(default_factory=list)
    csv: CsvRead | None = None  # how `sql` reads a text file (None: Parquet)
    varchar: list[str] = field(default_factory=list)  # raw columns `sql` reads as text (the ids)
    # Several files read as one (Tenrec's lifelong task_0..task_3.csv): the parts, in order, each with
    # the same `values` and `labels`; `sql` is then unused.
    parts: list[Scan] = field(default_factory=list)
    item_prefix: str = ""  # put before every item id of this file (separate catalogues stay apart)
    constants: dict[str, float] = field(default_factory=dict)  # values that are one number for the file
    absent: list[str] = field(default_factory=list)  # values and labels this file lacks (read as empty)

    def read_values(self) -> list[str]:
        """The value columns read from the file itself (not constants, not absent)."""
        return [v for v in self.values if v not in self.constants and v not in self.absent]

    def raw(self, name: str) -> str:
        """The file's own name of a clean column name."""
        return {v: k for k, v in self.rename.items()}.get(name, name)

    def col(self, name: str) -> str:
        """SQL identifier for a clean column name."""
        return ident(self.raw(name))

    def typed_sql(self, types: dict[str, str]) -> str:
        """`sql` with these clean columns read as these DuckDB types (text files; Parquet keeps its own)."""
        if self.csv is None:
            return self.sql
        return self.csv.sql({**{c: "VARCHAR" for c in self.varchar}, **{self.raw(c): t for c, t in types.items()}})

    def varchar_sql(self) -> str:
        """`sql` with every column read as text (Parquet: as stored)."""
        return self.csv.sql(all_varchar=True) if self.csv is not None else self.sql


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def _q(s: str | Path) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _csv_scan(
    path: Path,
    sep: str,
    header: bool,
    encoding: str = "utf-8",
    names: list[str] | None = None,
    varchar: Sequence[str] = (),
    max_line_size: int | None = None,
) -> tuple[str, CsvRead]:
    read = CsvRead(path, sep, header, encoding, names, max_line_size)
    # ids are kept as text: a stable vocabulary of the user's own ids, whatever they look like.
    return read.sql({c: "VARCHAR" for c in varchar}), read


def _text_encoding(source: SourceConfig | ProfileSource, fmt: str | None) -> str:
    """The encoding of a text source (config.normalize_encoding has checked the spelling); formats that
    fix their own encoding refuse another one."""
    enc = source.encoding
    if enc not in ENCODINGS:  # only reachable when a config was built without validation
        raise ConfigError(f"source.encoding {enc!r} is not supported: use one of {', '.join(ENCODINGS)}")
    if fmt == "parquet" and enc != "utf-8":
        raise ConfigError(f"source.encoding {enc!r}: Parquet files carry their own encoding; remove the option")
    if fmt == "grouplens" and enc not in ("utf-8", "latin-1"):
        raise ConfigError(f"source.encoding {enc!r}: GroupLens files are Latin-1; remove the option")
    return enc


def _columns(source: SourceConfig, default: Columns) -> Columns:
    return source.columns if source.columns is not None else default


def _needed(cols: Columns) -> dict[str, str | None]:
    need: dict[str, str | None] = {
        "user": cols.user,
        "item": cols.item,
        "timestamp": cols.timestamp,
        "rating": cols.rating,
    }
    need.update({f"values ({v})": v for v in cols.values})
    need.update({f"labels ({v})": v for v in cols.labels})
    return need


def _delimited(
    path: Path,
    sep: str,
    cols: Columns,
    encoding: str = "utf-8",
    recbole: bool = False,
    max_line_size: int | None = None,
) -> Scan:
    header = check_header(path, sep, encoding, _needed(cols))
    rename = {h: h.split(":", 1)[0] for h in header} if recbole else {}
    raw_of = {v: k for k, v in rename.items()}
    varchar = [raw_of.get(cols.user, cols.user), raw_of.get(cols.item, cols.item)]
    values = ([cols.rating] if cols.rating else []) + [v for v in cols.values if v != cols.rating]
    sql, read = _csv_scan(path, sep, True, encoding, varchar=varchar, max_line_size=max_line_size)
    return Scan(
        path,
        sql,
        cols.user,
        cols.item,
        cols.timestamp,
        values,
        list(cols.labels),
        rename=rename,
        header=header,
        csv=read,
        varchar=varchar,
    )


def _grouplens(path: Path, cols: Columns | None, max_line_size: int | None = None) -> tuple[Scan, Scan]:
    """ratings.dat/users.dat ('::', Latin-1) or u.data/u.user (tab and '|')."""
    folder = path if path.is_dir() else path.parent
    if (folder / "ratings.dat").exists() or path.name == "ratings.dat":
        ratings, users = folder / "ratings.dat", folder / "users.dat"
        inter = ("::", ["user_id", "item_id", "rating", "timestamp"])
        prof = ("::", ["user_id", "gender", "age", "occupation", "zip_code"])
    elif (folder / "u.data").exists() or path.name == "u.data":
        ratings, users = folder / "u.data", folder / "u.user"
        inter = ("\t", ["user_id", "item_id", "rating", "timestamp"])
        prof = ("|", ["user_id", "age", "gender", "occupation", "zip_code"])
    else:
        raise DataError(
            "no ratings.dat or u.data here",
            file=path,
            expected="a GroupLens folder or its ratings.dat / u.data file",
        )
    require(ratings)
    first = first_line(ratings, "latin-1")
    if inter[0] not in first:
        raise DataError(
            f"not separated by {COMMON_SEPS[inter[0]]}",
            file=ratings,
            line=1,
            expected="user::item::rating::timestamp" if inter[0] == "::" else "user<TAB>item<TAB>rating<TAB>timestamp",
        )
    sql, read = _csv_scan(ratings, inter[0], False, "latin-1", inter[1], ["user_id", "item_id"], max_line_size)
    scan = Scan(
        ratings,
        sql,
        "user_id",
        "item_id",
        "timestamp",
        ["rating"],
        header=inter[1],
        csv=read,
        varchar=["user_id", "item_id"],
    )
    psql, pread = _csv_scan(users, prof[0], False, "latin-1", prof[1], ["user_id"], max_line_size)
    pscan = Scan(
        users,
        psql,
        "user_id",
        labels=prof[1][1:],
        header=prof[1],
        csv=pread,
        varchar=["user_id"],
    )
    if cols is not None:
        raise DataError("GroupLens files have fixed columns; remove source.columns", file=path)
    return scan, pscan


def interaction_scan(source: SourceConfig) -> tuple[Scan, Scan | None, dict[str, str]]:
    """The scan of the interactions, the scan of the profile table (if any) and pinned hashes."""
    hashes: dict[str, str] = {}
    profile: Scan | None = None
    limit = source.max_line_size
    if source.dataset is not None:
        got = fetch(source.dataset, quiet=False)
        assert got.interactions is not None and got.users is not None  # SourceConfig lists interaction datasets
        cols = Columns(user="user_id", item="item_id", timestamp="timestamp", rating="rating")
        scan = _delimited(got.interactions, "\t", cols, recbole=True, max_line_size=limit)
        profile = _delimited_profile(got.users, "\t", "user_id", None, recbole=True, max_line_size=limit)
        return scan, profile, got.hashes
    assert source.path is not None  # SourceConfig requires exactly one of dataset and path
    fmt = source.format
    enc = _text_encoding(source, fmt)
    path = require(source.path, folder_ok=fmt in ("grouplens", "tenrec_lifelong"))
    if fmt == "grouplens":
        scan, profile = _grouplens(path, source.columns, limit)
        if not profile.file.exists():
            profile = None
    elif fmt in ("csv", "tsv"):
        scan = _delimited(path, "," if fmt == "csv" else "\t", _columns(source, Columns()), enc, max_line_size=limit)
    elif fmt == "recbole":
        cols = _columns(source, Columns(rating="rating"))
        scan = _delimited(path, "\t", cols, enc, recbole=True, max_line_size=limit)
        sibling = path.with_suffix(".user")
        if sibling.is_file() and source.profiles is None:
            profile = _delimited_profile(
                sibling, "\t", cols.user, None, recbole=True, encoding=enc, max_line_size=limit
            )
    elif fmt == "tenrec":
        from .tenrec import tenrec  # tenrec builds on this module's helpers

        scan = tenrec(path, source.columns, enc, limit)
    elif fmt == "tenrec_lifelong":
        from .tenrec import tenrec_lifelong

        scan = tenrec_lifelong(path, source.columns, enc, limit)
    elif fmt == "parquet":
        scan = _parquet(path, _columns(source, Columns()))
    else:  # pragma: no cover - pydantic restricts the literal
        raise DataError(f"unsupported format '{fmt}'", file=path)
    if source.profiles is not None:
        profile = profile_scan(source.profiles, limit)
    return scan, profile, hashes


def _parquet(path: Path, cols: Columns) -> Scan:
    schema = _parquet_schema(path)
    names = schema.names
    for role, col in _needed(cols).items():
        if col is not None and col not in names:
            raise DataError(
                f"missing column '{col}' (the {role} column); columns are: {', '.join(names)}",
                file=path,
                expected=f"a '{col}' column, or set source.columns.{role}",
            )
        if col is not None:
            _refuse_nested(path, schema, col, role)
    values = ([cols.rating] if cols.rating else []) + [v for v in cols.values if v != cols.rating]
    return Scan(
        path,
        f"read_parquet({_q(path)}, file_row_number=true)",
        cols.user,
        cols.item,
        cols.timestamp,
        values,
        list(cols.labels),
        row_column="file_row_number",
        header=names,
    )


def _parquet_schema(path: Path):  # -> pyarrow.Schema
    import pyarrow.parquet as pq

    require(path)
    try:
        return pq.read_schema(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a non-Parquet file
        raise DataError(f"not a readable Parquet file ({' '.join(str(e).split())[:240]})", file=path) from None


def _refuse_nested(path: Path, schema, col: str, role: str) -> None:
    """DuckDB would turn a list or struct into its text form (an id like "[1, 2]"), silently: refuse it."""
    kind = schema.field(col).type
    if str(kind).startswith(_NESTED):
        raise DataError(
            f"column '{col}' (the {role} column) has the nested type {kind}",
            file=path,
            field=col,
            expected="one plain value per row (text or a number)",
        )


def _delimited_profile(
    path: Path,
    sep: str,
    user: str,
    fields: list[str] | None,
    recbole: bool = False,
    encoding: str = "utf-8",
    max_line_size: int | None = None,
) -> Scan:
    need: dict[str, str | None] = {"user": user}
    need.update({f"fields ({f})": f for f in fields or []})
    header = check_header(path, sep, encoding, need)
    rename = {h: h.split(":", 1)[0] for h in header} if recbole else {}
    clean = [rename.get(h, h) for h in header]
    labels = fields if fields is not None else [c for c in clean if c != user]
    raw_user = {v: k for k, v in rename.items()}.get(user, user)
    sql, read = _csv_scan(path, sep, True, encoding, varchar=[raw_user], max_line_size=max_line_size)
    return Scan(
        path,
        sql,
        user,
        labels=labels,
        rename=rename,
        header=header,
        csv=read,
        varchar=[raw_user],
    )


def profile_scan(p: ProfileSource, max_line_size: int | None = None) -> Scan:
    enc = _text_encoding(p, p.format)
    path = require(p.path, folder_ok=p.format == "grouplens")
    if p.format == "parquet":
        names = _parquet(path, Columns(user=p.user, item=p.user, timestamp=None, labels=p.fields or [])).header
        labels = p.fields if p.fields is not None else [c for c in names if c != p.user]
        schema = _parquet_schema(path)
        for c in labels:
            _refuse_nested(path, schema, c, f"labels ({c})")
        return Scan(path, f"read_parquet({_q(path)})", p.user, labels=labels, header=names)
    if p.format == "grouplens":
        _, prof = _grouplens(path, None, max_line_size)
        return prof
    sep = {"csv": ",", "tsv": "\t", "recbole": "\t"}[p.format]
    return _delimited_profile(
        path, sep, p.user, p.fields, recbole=p.format == "recbole", encoding=enc, max_line_size=max_line_size
    )


# ------------------------------------------------------------------ engine errors, in one line
