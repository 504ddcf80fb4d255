"""What a delimited text file holds before DuckDB reads it: that it exists, its first line, the first
bytes that are not valid in its encoding (Python finds them; DuckDB reports such errors at the wrong
line), and a header checked for duplicates, a wrong separator and missing columns. Each failure is a
DataError that names the file and line."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

from ..config import ENCODINGS
from ..errors import DataError

# Separators we recognise when telling a user that their file uses a different one.
COMMON_SEPS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "::": "'::'"}


def require(path: str | Path, folder_ok: bool = False) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("file not found", file=p)
    if p.is_dir() and not folder_ok:
        raise DataError("is a folder, not a file", file=p, expected="the path of a data file")
    return p


def first_line(path: Path, encoding: str) -> str:
    require(path)
    chunk = 1 << 20
    try:
        with open(path, encoding=encoding, newline="") as f:
            lineno = 0
            while line := f.readline(chunk):
                lineno += 1
                if len(line) == chunk and not line.endswith(("\n", "\r")):
                    raise DataError(
                        f"the first line is longer than {chunk:,} characters",
                        file=path,
                        line=lineno,
                        expected="a header line naming the columns",
                    )
                line = line.lstrip("\ufeff").rstrip("\r\n")  # a byte order mark is not part of the header
                if line.strip():
                    return line
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None
    except OSError as e:
        raise DataError(f"cannot be read ({e.strerror or e})", file=path) from None
    raise DataError("file is empty", file=path, expected="a header line and data rows")


def first_undecodable(path: Path, encoding: str) -> tuple[int, int, bytes] | None:
    """(line, byte offset, the bad bytes) of the first byte sequence that is not valid `encoding`, or
    None. Python finds it itself: DuckDB reports such errors at the wrong line."""
    dec = codecs.getincrementaldecoder(encoding)()
    lines, offset = 1, 0
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        wide = "utf-16-be" if head == b"\xfe\xff" else "utf-16-le"
        while True:
            block = f.read(1 << 20)
            try:
                text = dec.decode(block, final=not block)
            except UnicodeDecodeError as e:
                good = e.object[: e.start]
                if encoding == "utf-16":
                    lines += good.decode(wide, errors="ignore").count("\n")
                else:
                    lines += good.count(b"\n")
                pending = len(e.object) - len(block)  # bytes held back from the previous block
                return lines, offset - pending + e.start, bytes(e.object[e.start : e.end])
            lines += text.count("\n")
            offset += len(block)
            if not block:
                return None


def decode_error(path: Path, encoding: str) -> DataError:
    bad = first_undecodable(path, encoding)
    line, what = (bad[0], f": byte {bad[2][:4].hex(' ')} at offset {bad[1]:,}") if bad else (None, "")
    return DataError(
        f"not valid {encoding} text{what}",
        file=path,
        line=line,
        expected=f"{encoding} text, or source.encoding set to the file's encoding ({', '.join(ENCODINGS)})",
    )


def check_header(path: Path, sep: str, encoding: str, needed: dict[str, str | None]) -> list[str]:
    """Return the header cells; raise a clear error for duplicates, a wrong separator, missing columns."""
    line = first_line(path, encoding)
    if len(sep) == 1:  # quoted names as DuckDB reads them: "a,b" is one name, "a""b" is a"b
        cells = [c.strip() for c in next(csv.reader([line], delimiter=sep, quotechar='"'), [""])]
    else:
        cells = [c.strip().strip('"') for c in line.split(sep)]
    if len(cells) == 1:
        for other, name in COMMON_SEPS.items():
            if other != sep and other in line:
                raise DataError(
                    f"the header has a single column but contains {name} characters: "
                    f"the file seems to be separated by {name}, not {COMMON_SEPS.get(sep, repr(sep))}",
                    file=path,
                    line=1,
                    expected=f"{COMMON_SEPS.get(sep, repr(sep))}-separated columns",
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
