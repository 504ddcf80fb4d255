"""User-facing errors.

Everything a user can cause (a bad file, a bad config value, a missing download) is raised as a
`LifelongrecError`; the CLI prints its message without a traceback. Messages name the file, the row
or line, the field and what was expected, so the user can fix the input without reading our code.
"""

from __future__ import annotations

from pathlib import Path


class LifelongrecError(Exception):
    """An error the user can fix; its message is shown as is."""


class DataError(LifelongrecError):
    """Bad input data. Built from where the problem is and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line:,}")
        if row is not None:
            where.append(f"row {row:,}")
        if field is not None:
            where.append(f"field '{field}'")
        text = (": ".join([", ".join(where), message]) if where else message).rstrip(".")
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
        self.file, self.row, self.line, self.field, self.expected = file, row, line, field, expected


class ConfigError(LifelongrecError):
    """A config value that does not validate."""


class FetchError(LifelongrecError):
    """A download that failed or did not match its pinned hash."""
