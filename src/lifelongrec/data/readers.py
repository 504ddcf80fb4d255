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

from ..config import Columns, ProfileSource, SourceConfig
from ..errors import DataError
from .sources import fetch

# Separators we recognise when telling a user that their file uses a different one.
_COMMON_SEPS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "::": "'::'"}


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

    def col(self, name: str) -> str:
        """SQL identifier for a clean column name."""
        raw = {v: k for k, v in self.rename.items()}.get(name, name)
        return '"' + raw.replace('"', '""') + '"'


def _q(s: str | Path) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _first_line(path: Path, encoding: str) -> str:
    try:
        with open(path, encoding=encoding, newline="") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if line.strip():
                    return line
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not valid {encoding} text ({e.reason})", file=path, line=1) from None
    raise DataError("file is empty", file=path, expected="a header line and data rows")


def _check_header(path: Path, sep: str, encoding: str, needed: dict[str, str | None]) -> list[str]:
    """Return the header cells; raise a clear error for duplicates, a wrong separator, missing columns."""
    line = _first_line(path, encoding)
    cells = [c.strip().strip('"') for c in line.split(sep)]
    if len(cells) == 1:
        for other, name in _COMMON_SEPS.items():
            if other != sep and other in line:
                raise DataError(
                    f"the header has a single column but contains {name} characters: "
                    f"the file seems to be separated by {name}, not {_COMMON_SEPS.get(sep, repr(sep))}",
                    file=path,
                    line=1,
                    expected=f"{_COMMON_SEPS.get(sep, repr(sep))}-separated columns",
                )
    seen: set[str] = set()
    for c in cells:
        if c in seen:
            raise DataError(
                f"duplicate column name '{c}' in the header",
                file=path,
                line=1,
                expected="unique column names",
            )
        seen.add(c)
    clean = [c.split(":", 1)[0] for c in cells]
    for role, col in needed.items():
        if col is not None and col not in clean:
            raise DataError(
                f"missing column '{col}' (the {role} column); header has: {', '.join(clean)}",
                file=path,
                line=1,
                expected=f"a '{col}' column, or set source.columns.{role} to the right name",
            )
    return cells


def _csv_scan(
    path: Path,
    sep: str,
    header: bool,
    encoding: str = "utf-8",
    names: list[str] | None = None,
    varchar: Sequence[str] = (),
) -> str:
    opts = [
        f"sep={_q(sep)}",
        f"header={'true' if header else 'false'}",
        "quote='\"'",
        f"encoding={_q(encoding)}",
    ]
    if names:
        opts.append("names=[" + ", ".join(_q(n) for n in names) + "]")
    if varchar:
        # ids are kept as text: a stable vocabulary of the user's own ids, whatever they look like.
        opts.append("types={" + ", ".join(f"{_q(c)}: 'VARCHAR'" for c in varchar) + "}")
    return f"read_csv({_q(path)}, {', '.join(opts)})"


def _require(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("file not found", file=p)
    return p


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


def _delimited(path: Path, sep: str, cols: Columns, encoding: str = "utf-8", recbole: bool = False) -> Scan:
    header = _check_header(path, sep, encoding, _needed(cols))
    rename = {h: h.split(":", 1)[0] for h in header} if recbole else {}
    raw_of = {v: k for k, v in rename.items()}
    varchar = [raw_of.get(cols.user, cols.user), raw_of.get(cols.item, cols.item)]
    values = ([cols.rating] if cols.rating else []) + [v for v in cols.values if v != cols.rating]
    return Scan(
        path,
        _csv_scan(path, sep, True, encoding, varchar=varchar),
        cols.user,
        cols.item,
        cols.timestamp,
        values,
        list(cols.labels),
        rename=rename,
        header=header,
    )


def _grouplens(path: Path, cols: Columns | None) -> tuple[Scan, Scan]:
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
    _require(ratings)
    first = _first_line(ratings, "latin-1")
    if inter[0] not in first:
        raise DataError(
            f"not separated by {_COMMON_SEPS[inter[0]]}",
            file=ratings,
            line=1,
            expected="user::item::rating::timestamp" if inter[0] == "::" else "user<TAB>item<TAB>rating<TAB>timestamp",
        )
    scan = Scan(
        ratings,
        _csv_scan(ratings, inter[0], False, "latin-1", inter[1], ["user_id", "item_id"]),
        "user_id",
        "item_id",
        "timestamp",
        ["rating"],
        header=inter[1],
    )
    pscan = Scan(
        users,
        _csv_scan(users, prof[0], False, "latin-1", prof[1], ["user_id"]),
        "user_id",
        labels=prof[1][1:],
        header=prof[1],
    )
    if cols is not None:
        raise DataError("GroupLens files have fixed columns; remove source.columns", file=path)
    return scan, pscan


def interaction_scan(source: SourceConfig) -> tuple[Scan, Scan | None, dict[str, str]]:
    """The scan of the interactions, the scan of the profile table (if any) and pinned hashes."""
    hashes: dict[str, str] = {}
    profile: Scan | None = None
    if source.dataset is not None:
        got = fetch(source.dataset, quiet=False)
        cols = Columns(user="user_id", item="item_id", timestamp="timestamp", rating="rating")
        scan = _delimited(got.interactions, "\t", cols, recbole=True)
        profile = _delimited_profile(got.users, "\t", "user_id", None, recbole=True)
        return scan, profile, got.hashes
    assert source.path is not None  # SourceConfig requires exactly one of dataset and path
    fmt, path = source.format, _require(source.path)
    if fmt == "grouplens":
        scan, profile = _grouplens(path, source.columns)
        if not profile.file.exists():
            profile = None
    elif fmt in ("csv", "tsv"):
        scan = _delimited(path, "," if fmt == "csv" else "\t", _columns(source, Columns()))
    elif fmt == "recbole":
        cols = _columns(source, Columns(rating="rating"))
        scan = _delimited(path, "\t", cols, recbole=True)
        sibling = path.with_suffix(".user")
        if sibling.exists() and source.profiles is None:
            profile = _delimited_profile(sibling, "\t", cols.user, None, recbole=True)
    elif fmt == "tenrec":
        scan = _tenrec(path, source.columns)
    elif fmt == "parquet":
        scan = _parquet(path, _columns(source, Columns()))
    else:  # pragma: no cover - pydantic restricts the literal
        raise DataError(f"unsupported format '{fmt}'", file=path)
    if source.profiles is not None:
        profile = profile_scan(source.profiles)
    return scan, profile, hashes


_TENREC_VALUES = ["click", "follow", "like", "share", "watching_times"]
_TENREC_LABELS = ["gender", "age"]


def _tenrec(path: Path, cols: Columns | None) -> Scan:
    """Tenrec CSVs: no timestamp, file order is click order; gender/age repeated on every row."""
    header = _check_header(
        path, ",", "utf-8", {"user": "user_id", "item": "item_id"} if cols is None else _needed(cols)
    )
    if cols is None:
        cols = Columns(
            user="user_id",
            item="item_id",
            timestamp=None,
            values=[v for v in _TENREC_VALUES if v in header],
            labels=[v for v in _TENREC_LABELS if v in header],
        )
    return Scan(
        path,
        _csv_scan(path, ",", True, varchar=[cols.user, cols.item]),
        cols.user,
        cols.item,
        cols.timestamp,
        list(cols.values),
        list(cols.labels),
        header=header,
    )


def _parquet(path: Path, cols: Columns) -> Scan:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a non-Parquet file
        raise DataError(f"not a readable Parquet file ({e})", file=path) from None
    for role, col in _needed(cols).items():
        if col is not None and col not in names:
            raise DataError(
                f"missing column '{col}' (the {role} column); columns are: {', '.join(names)}",
                file=path,
                expected=f"a '{col}' column, or set source.columns.{role}",
            )
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


def _delimited_profile(
    path: Path, sep: str, user: str, fields: list[str] | None, recbole: bool = False, encoding: str = "utf-8"
) -> Scan:
    need: dict[str, str | None] = {"user": user}
    need.update({f"fields ({f})": f for f in fields or []})
    header = _check_header(path, sep, encoding, need)
    rename = {h: h.split(":", 1)[0] for h in header} if recbole else {}
    clean = [rename.get(h, h) for h in header]
    labels = fields if fields is not None else [c for c in clean if c != user]
    raw_user = {v: k for k, v in rename.items()}.get(user, user)
    return Scan(
        path,
        _csv_scan(path, sep, True, encoding, varchar=[raw_user]),
        user,
        labels=labels,
        rename=rename,
        header=header,
    )


def profile_scan(p: ProfileSource) -> Scan:
    path = _require(p.path)
    if p.format == "parquet":
        names = _parquet(path, Columns(user=p.user, item=p.user, timestamp=None)).header
        labels = p.fields if p.fields is not None else [c for c in names if c != p.user]
        return Scan(path, f"read_parquet({_q(path)})", p.user, labels=labels, header=names)
    if p.format == "grouplens":
        _, prof = _grouplens(path, None)
        return prof
    sep = {"csv": ",", "tsv": "\t", "recbole": "\t"}[p.format]
    return _delimited_profile(path, sep, p.user, p.fields, recbole=p.format == "recbole")
