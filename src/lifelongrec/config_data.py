"""The data side of a stream config: where the interactions come from (`source`, its columns and text
encoding, the profile file), which events a task keeps (`Filter`), how examples are split
(`SplitConfig`) and which profile field is a label (`LabelConfig`). Re-exported by `config`, which
holds the training side and loading.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

FORMATS = ("csv", "tsv", "parquet", "grouplens", "recbole", "tenrec", "tenrec_lifelong", "conure")

# Text encodings DuckDB's CSV reader decodes itself (others need its `encodings` extension, which these
# machines cannot download); the spellings people use for them.
ENCODINGS = ("utf-8", "utf-16", "latin-1")
_ENCODING_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "utf16": "utf-16",
    "utf-16": "utf-16",
    "latin1": "latin-1",
    "latin-1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
}


def normalize_encoding(value: str) -> str:
    """One of ENCODINGS for any usual spelling of it; a ValueError listing them otherwise."""
    got = _ENCODING_ALIASES.get(str(value).strip().lower().replace("_", "-"))
    if got is None:
        raise ValueError(f"encoding {value!r} is not supported: use one of {', '.join(ENCODINGS)}")
    return got


def _omit_defaults(data: Any, defaults: dict[str, Any]) -> Any:
    """Leave options at their default out of a dump, so configs, cache keys and manifests written before
    the option existed stay equal to today's."""
    if isinstance(data, dict):
        for k, v in defaults.items():
            if k in data and data[k] == v:
                del data[k]
    return data


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Columns(Strict):
    """Which column of the user's file holds what. Unset optional columns are simply absent."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    rating: str | None = None
    # Extra numeric per-event columns kept in the store so task filters can use them (Tenrec: like, share).
    values: list[str] = Field(default_factory=list)
    # Per-user label columns found in the interaction file itself (Tenrec: gender, age).
    labels: list[str] = Field(default_factory=list)


class _TextEncoding(Strict):
    # Text encoding of csv/tsv/recbole/tenrec files: utf-8, utf-16 or latin-1 (GroupLens is always Latin-1).
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        return normalize_encoding(v)


class ProfileSource(_TextEncoding):
    """A per-user table of labels (users.dat, ml-1m.user, a CSV...)."""

    path: str
    format: Literal["csv", "tsv", "parquet", "grouplens", "recbole"] = "csv"
    user: str = "user_id"
    fields: list[str] | None = None  # None = every column but the user

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(handler(self), {"encoding": "utf-8"})


class LabelFile(_TextEncoding):
    """A task's targets from a file of the user's own (`lifelongrec task add --labels FILE`): rows of
    user id and label (classify, binary: one row per user) or user id and item id (item_rec: any
    number of rows per user, items from the stream's catalogue). Users the stream does not have, and
    items it does not have, are counted in the stream's manifest, not used."""

    path: str
    format: Literal["csv", "tsv", "parquet"] = "csv"
    user: str = "user_id"
    label: str = "label"  # the label column (classify, binary)
    item: str = "item_id"  # the item column (item_rec)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(handler(self), {"encoding": "utf-8"})


class SourceConfig(_TextEncoding):
    """Either a known dataset (fetched into the cache) or the user's own files."""

    dataset: Literal["ml-1m", "ml-100k"] | None = None
    path: str | None = None
    # tenrec_lifelong: `path` is a folder with Tenrec's lifelong task files task_0.csv, task_1.csv, ...
    format: Literal["csv", "tsv", "parquet", "grouplens", "recbole", "tenrec", "tenrec_lifelong"] | None = None
    columns: Columns | None = None
    profiles: ProfileSource | None = None
    # Label values that mean "unknown" (Tenrec uses 0); such users get no example in that task.
    unknown_labels: list[Any] = Field(default_factory=list)
    # Longest line DuckDB's CSV reader accepts, in bytes (None: 2,000,000, DuckDB's default).
    max_line_size: int | None = Field(default=None, ge=1)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(handler(self), {"encoding": "utf-8", "max_line_size": None})

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("set exactly one of source.dataset (ml-1m, ml-100k) or source.path")
        if self.path is not None and self.format is None:
            raise ValueError(
                "source.format is required with source.path "
                "(csv, tsv, parquet, grouplens, recbole, tenrec, tenrec_lifelong)"
            )
        return self


class Filter(Strict):
    """Keep the events whose `column` passes every bound that is set (min/max inclusive, gt/lt strict).

    Besides the data's value columns, `position` is always there: an event's place in its user's
    time-ordered events, i / n for the i-th of n (0 for the first; every event of the store counts,
    whatever the filters). It cuts each timeline into a past and a future: input events with
    `{column: position, lt: 0.8}`, targets with `{column: position, min: 0.8}`."""

    column: str = "rating"
    eq: float | None = None
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    isin: list[float] | None = Field(default=None, alias="in")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(handler(self), {"gt": None, "lt": None})


class SplitConfig(Strict):
    seed: int = 42
    fractions: tuple[float, float, float] = (0.8, 0.05, 0.15)
    # by_user: users (with their whole sequence) go to one split; valid/test users predict their last item.
    # leave_last: every user trains on all but the last two; valid = second to last, test = last.
    # random: each example goes to a split at random (the default for item_rec / classify).
    mode: Literal["random", "by_user", "leave_last"] | None = None

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {list(v)}")
        return v


class LabelConfig(Strict):
    field: str
    # Optional bucketing of a numeric label: value -> index of the first bin edge it is below.
    bins: list[float] | None = None
    # Optional closed list of classes; any other value is an error naming the row.
    classes: list[Any] | None = None
    # binary tasks: the value that is the positive class (target 1); None = the second of the two
    # values in class order (as listed in `classes`, else sorted as classify sorts).
    positive: Any = None
