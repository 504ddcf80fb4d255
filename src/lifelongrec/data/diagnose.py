"""Why the engine refused a text file, said in one line: DuckDB's own errors are long and suggest
options the command line cannot set, and on an invalid byte they can name the wrong line. When a read
fails, the file is checked here in Python (encoding, line length, field count, quotes, line endings)
and the first real problem is reported with its file, line and what was expected."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .readers import DUCKDB_MAX_LINE_SIZE, CsvRead, Scan
from .textfile import COMMON_SEPS, decode_error, first_undecodable


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ENDINGS = {"\r\n": "CRLF (\\r\\n)", "\n": "LF (\\n)", "\r": "CR (\\r)"}


def _ending(line: str) -> str | None:
    return next((e for e in _ENDINGS if line.endswith(e)), None)


def _bounded_lines(f, limit: int, path: Path, encoding: str, counter: list[int]) -> Iterator[str]:
    """The lines of a text file, each read with a bounded buffer; a line longer than `limit` bytes is an
    error naming it (DuckDB's max_line_size), and so is a line ending unlike the first line's (DuckDB
    cannot read mixed line endings). counter[0] is the number of the line last yielded."""
    first_end: str | None = None
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        counter[0] += 1
        size = len(line.encode(encoding)) if len(line) * 4 > limit else len(line)
        if size > limit or (len(line) > limit and not line.endswith(("\n", "\r"))):
            while len(line) > limit and not line.endswith(("\n", "\r")):  # measure the rest of it
                line = f.readline(limit + 1)
                size += len(line.encode(encoding))
            raise DataError(
                f"the line is {size:,} bytes long, more than the {limit:,} bytes DuckDB reads in one line",
                file=path,
                line=counter[0],
                expected="shorter lines, or a larger source.max_line_size in the config "
                "(e.g. --set source.max_line_size=" + str(max(size + 1024, 2 * limit)) + ")",
            )
        end = _ending(line)
        if first_end is None:
            first_end = end
        elif end is not None and end != first_end:
            raise DataError(
                f"the line ends with {_ENDINGS[end]}, the lines before it with {_ENDINGS[first_end]}",
                file=path,
                line=counter[0],
                expected="one kind of line ending in the whole file (was it pasted together from two files?)",
            )
        yield line


def diagnose_text(read: CsvRead, n_fields: int | None) -> DataError | None:
    """Read a text file in Python and say what is wrong with it: the first byte that is not valid in its
    encoding, the first line longer than DuckDB's limit, the first row with another number of fields
    than the header (or than `n_fields`), a quote that is never closed. None: nothing found."""
    path, enc = read.path, read.encoding
    if first_undecodable(path, enc) is not None:
        return decode_error(path, enc)
    limit = read.max_line_size or DUCKDB_MAX_LINE_SIZE
    counter = [0]
    expect = n_fields
    seen_header = not read.header
    expected_quotes = 'fields quoted with ", a quote inside a quoted field doubled ("")'
    try:
        with open(path, encoding=enc, newline="") as f:
            lines = _bounded_lines(f, limit, path, enc, counter)
            if len(read.sep) == 1:
                csv.field_size_limit(max(limit, 1 << 20))
                rows: Iterator[list[str]] = csv.reader(lines, delimiter=read.sep, quotechar='"', strict=True)
            else:  # a multi-character separator ('::'): no quoting
                rows = (ln.rstrip("\r\n").split(read.sep) for ln in lines)
            while True:
                start = counter[0] + 1
                try:
                    row = next(rows)
                except StopIteration:
                    return None
                except csv.Error as e:
                    if "end of data" in str(e) or "EOF" in str(e):
                        return DataError(
                            "a quoted field starting here is never closed",
                            file=path,
                            line=start,
                            expected=expected_quotes,
                        )
                    return DataError(f"bad quoting ({e})", file=path, line=counter[0], expected=expected_quotes)
                if not row:
                    continue  # empty lines are skipped (a line of spaces is a row of one field)
                if not seen_header:
                    seen_header, expect = True, len(row)
                    continue
                if expect is not None and len(row) != expect:
                    what = "header" if read.header else "format"
                    return DataError(
                        f"the row has {len(row)} field{'s' * (len(row) != 1)}, the {what} has {expect}",
                        file=path,
                        line=start,
                        expected=f"{expect} fields separated by {COMMON_SEPS.get(read.sep, repr(read.sep))} "
                        "on every row (a stray separator, or a value with the separator that is not quoted?)",
                    )
    except DataError as e:
        return e
    except UnicodeDecodeError:
        return decode_error(path, enc)
    except OSError as e:
        return DataError(f"cannot be read ({e.strerror or e})", file=path)


_REASON_STOP = ("Possible", "The search space", "*", "file =", "Column ", "This type", "LINE ", "^")


def explain_engine_error(scan: Scan, err: Exception) -> DataError:
    """DuckDB's error about reading `scan` as one line naming the file, the line and what was expected.
    Text files are first diagnosed in Python (DuckDB names wrong lines for encoding errors and huge
    lines, and suggests options the command line cannot set)."""
    if scan.csv is not None:
        found = diagnose_text(scan.csv, None if scan.csv.header else len(scan.header))
        if found is not None:
            return found
    text = str(err)
    m = re.search(r"CSV Error on Line: (\d+)", text)
    line = int(m.group(1)) if m else None
    conv = re.search(r'Error when converting column "([^"]*)"\. Could not convert string "(.*)" to \'(\w+)\'', text)
    if conv is not None:
        column, value, kind = conv.groups()
        clean = scan.rename.get(column, column)
        return DataError(
            f"value '{value}' is not a {kind} like the values before it",
            file=scan.file,
            line=line,
            field=clean,
            expected=f"every value of '{clean}' of one type",
        )
    reasons = []
    for raw in text.splitlines():
        ln = raw.strip()
        if not ln or ln.startswith("Original Line:"):
            continue
        if ln.startswith(_REASON_STOP):
            break
        ln = re.sub(r"^[A-Za-z ]*Error: ", "", ln)
        ln = re.sub(r"CSV Error on Line: \d+", "", ln).strip()
        ln = ln.replace(str(scan.file), "the file").replace(f'"{scan.file}"', "the file")
        if ln:
            reasons.append(ln.rstrip("."))
        if len(reasons) == 2:
            break
    reason = _one_line("; ".join(reasons) or text)
    hint = None
    if re.search(r"maximum line size", text, re.IGNORECASE):
        hint = "shorter lines, or a larger source.max_line_size in the config"
    elif scan.csv is not None:
        sep = COMMON_SEPS.get(scan.csv.sep, repr(scan.csv.sep))
        hint = f'{scan.csv.encoding} text with {sep}-separated fields, quoted with " where needed'
    return DataError(f"could not be read: {reason}", file=scan.file, line=line, expected=hint)
