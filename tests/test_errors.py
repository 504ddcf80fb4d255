"""Bad input: clear messages naming the file, row/line, field and what was expected; no partial output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import stream_yaml, write

from lifelongrec.config import Columns, ProfileSource, SourceConfig, load_config
from lifelongrec.data.prepare import prepare
from lifelongrec.data.sources import cache_root
from lifelongrec.data.store import open_store
from lifelongrec.errors import DataError


def ingest_csv(p: Path, **cols) -> None:
    open_store(SourceConfig(path=str(p), format="csv", columns=Columns(**cols)), cache_root())


def test_missing_column(tmp_path):
    p = write(tmp_path / "r.csv", "user_id,item,timestamp\n1,2,3\n")
    with pytest.raises(DataError) as e:
        ingest_csv(p)
    msg = str(e.value)
    assert str(p) in msg and "missing column 'item_id'" in msg and "header has: user_id, item, timestamp" in msg


def test_non_numeric_timestamp_names_row_and_value(tmp_path):
    rows = "\n".join(f"u,i{k},{k}" for k in range(3000))
    p = write(tmp_path / "r.csv", "user_id,item_id,timestamp\n" + rows + "\nu,x,yesterday\n")
    with pytest.raises(DataError) as e:
        ingest_csv(p)
    msg = str(e.value)
    assert "row 3,001" in msg and "field 'timestamp'" in msg and "'yesterday' is not a number" in msg


def test_duplicated_header_line(tmp_path):
    body = "user_id,item_id,timestamp\n" + "\n".join(f"u,i{k},{k}" for k in range(3000)) + "\n"
    p = write(tmp_path / "r.csv", body + body)  # two files concatenated
    with pytest.raises(DataError, match="repeats the header") as e:
        ingest_csv(p)
    assert "row 3,001" in str(e.value)


def test_duplicate_column_name(tmp_path):
    p = write(tmp_path / "r.csv", "user_id,item_id,item_id,timestamp\n1,2,2,3\n")
    with pytest.raises(DataError, match="duplicate column name 'item_id'"):
        ingest_csv(p)


def test_wrong_separator(tmp_path):
    p = write(tmp_path / "r.csv", "user_id;item_id;timestamp\n1;2;3\n")
    with pytest.raises(DataError, match="separated by semicolon, not comma"):
        ingest_csv(p)


def test_empty_user(tmp_path):
    p = write(tmp_path / "r.csv", "user_id,item_id,timestamp\n1,2,3\n,2,4\n")
    with pytest.raises(DataError, match=r"row 2, field 'user': empty value"):
        ingest_csv(p)


def test_empty_file(tmp_path):
    p = write(tmp_path / "r.csv", "")
    with pytest.raises(DataError, match="file is empty"):
        ingest_csv(p)


def test_duplicate_user_in_profile(tmp_path, ratings_csv):
    users = write(tmp_path / "u.csv", "user_id,gender\nu1,M\nu2,F\nu1,F\n")
    with pytest.raises(DataError, match=r"user 'u1' appears more than once \(rows 1, 3\)"):
        open_store(
            SourceConfig(
                path=str(ratings_csv),
                format="csv",
                columns=Columns(rating="rating"),
                profiles=ProfileSource(path=str(users)),
            ),
            cache_root(),
        )


def test_unknown_label(tmp_path, ratings_csv, users_csv):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["tasks.2.label={field: gender, classes: [M]}"])
    with pytest.raises(DataError) as e:
        prepare(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "unknown label 'F'" in msg and "field 'gender'" in msg and "users.csv" in msg


def test_filter_on_missing_column(tmp_path, ratings_csv, users_csv):
    from lifelongrec.errors import ConfigError

    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv), ["tasks.1.filter.column=stars"])
    with pytest.raises(ConfigError, match="filter column 'stars'"):
        prepare(cfg, tmp_path / "out")


def test_failed_prepare_keeps_previous_output(tmp_path, ratings_csv, users_csv, monkeypatch):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv))
    out = tmp_path / "out"
    prepare(cfg, out)
    before = sorted(p.name for p in out.rglob("*"))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        prepare(cfg, out)
    assert sorted(p.name for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp leftovers


def test_failed_first_prepare_writes_nothing(tmp_path, ratings_csv, users_csv, monkeypatch):
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv))
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        prepare(cfg, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_cli_prints_error_without_traceback(tmp_path):
    p = write(tmp_path / "r.csv", "user_id;item_id\n1;2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lifelongrec.cli", "data", "stats", "--path", str(p), "--format", "csv"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr and "semicolon" in proc.stderr
