from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's `-n auto`) each worker gets its share of the cores, so two
    workers on two cores do not each start a two-thread pool; subprocesses the tests start inherit it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Each test gets its own cache, so no test sees another's ingested stores.

    Real-data tests share one cache across the session (the download is the slow part), placed at
    $LIFELONGREC_CACHE when the developer has one, so a fetched wheel is reused."""
    if request.node.get_closest_marker("realdata"):
        return
    monkeypatch.setenv("LIFELONGREC_CACHE", str(tmp_path_factory.mktemp("cache")))


def write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    """Write test data exactly: `newline` replaces every '\\n' (CRLF files), `encoding` chooses bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


@pytest.fixture
def ratings_csv(tmp_path: Path) -> Path:
    """Six users; u1 has two events tied on timestamp (file order decides); u6 is short."""
    rows = ["user_id,item_id,timestamp,rating"]
    events = {
        "u1": [("a", 10, 3), ("b", 5, 2), ("c", 5, 1), ("d", 20, 4), ("e", 30, 5), ("f", 40, 3), ("g", 50, 2)],
        "u2": [("a", 1, 1), ("b", 2, 2), ("c", 3, 3), ("d", 4, 3), ("e", 5, 3), ("f", 6, 4)],
        "u3": [("c", 1, 3), ("d", 2, 3), ("e", 3, 3), ("f", 4, 3), ("g", 5, 3), ("a", 6, 5)],
        "u4": [("g", 1, 2), ("f", 2, 2), ("e", 3, 2), ("d", 4, 2), ("c", 5, 2), ("b", 6, 4), ("a", 7, 5)],
        "u5": [("b", 9, 1), ("a", 8, 1), ("c", 7, 1), ("d", 6, 1), ("e", 5, 1), ("f", 4, 5)],
        "u6": [("a", 1, 3), ("b", 2, 3), ("c", 3, 5)],
    }
    for u, evs in events.items():
        rows += [f"{u},{i},{t},{r}" for i, t, r in evs]
    return write(tmp_path / "ratings.csv", "\n".join(rows) + "\n")


@pytest.fixture
def users_csv(tmp_path: Path) -> Path:
    text = "user_id,gender,age\nu1,M,25\nu2,F,18\nu3,M,35\nu4,F,25\nu5,M,56\nu6,F,25\nu9,M,18\n"
    return write(tmp_path / "users.csv", text)


def stream_yaml(tmp_path: Path, ratings: Path, users: Path, extra: str = "") -> Path:
    text = f"""
name: tiny
source:
  path: {ratings}
  format: csv
  columns: {{user: user_id, item: item_id, timestamp: timestamp, rating: rating}}
  profiles: {{path: {users}, format: csv, user: user_id}}
sequence: {{filter: {{column: rating, max: 3}}, min_length: 4, max_length: 3}}
split: {{seed: 7, fractions: [0.6, 0.2, 0.2]}}
tasks:
  - {{name: T1, kind: next_item}}
  - {{name: T2, kind: item_rec, filter: {{column: rating, min: 4}}}}
  - {{name: T3, kind: classify, label: gender}}
  - {{name: T4, kind: classify, label: {{field: age, bins: [20, 30]}}}}
{extra}
"""
    return write(tmp_path / "stream.yaml", text)
