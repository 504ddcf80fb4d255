"""`lifelongrec task add`: a task learned months later from the user's own label file, on top of a
finished run, without touching what the run already serves."""

from __future__ import annotations

import json

import pytest
from synthetic import N_ITEMS, read_matrix, synthetic_config
from typer.testing import CliRunner

from lifelongrec.cli import app
from lifelongrec.config import load_config
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream

HIST = ["i1", "i2", "i3", "i4"]


@pytest.fixture(params=["pcl", "conure"])
def finished(request, tmp_path):
    cfg = load_config(synthetic_config(tmp_path), ["train.epochs=2"])
    run_stream(cfg, request.param, tmp_path / "run", log=lambda *_: None)
    return tmp_path / "run"


def _answers(run):
    p = Predictor(run)
    return p.recommend("T2", HIST, k=5), p.classify("T3", HIST), p.embed("T1", HIST)


def _add(run, *args):
    return CliRunner().invoke(app, ["task", "add", str(run), *args])


def test_a_classify_task_from_a_label_file(finished, tmp_path):
    before = _answers(finished)
    rows = ["uid,segment"] + [f"u{u},{'A' if u % 3 else 'B'}" for u in range(120)] + ["stranger,A"]
    (tmp_path / "seg.csv").write_text("\n".join(rows) + "\n")
    r = _add(
        finished,
        "--name",
        "T4",
        "--kind",
        "classify",
        "--labels",
        str(tmp_path / "seg.csv"),
        "--user",
        "uid",
        "--label",
        "segment",
        "--set",
        "epochs=2",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["task"] == "T4" and out["data"]["rows_of_users_not_in_stream"] == 1  # "stranger"
    assert _answers(finished) == before  # the earlier tasks' outputs, bit for bit
    R = read_matrix(finished)
    assert len(R) == 4 and R[3][0] == R[2][0]
    assert R[3][1] == R[1][1] and R[3][2] == R[2][2]  # no forgetting recorded either
    c = Predictor(finished).classify("T4", HIST)
    assert set(c["probabilities"]) == {"A", "B"}


def test_an_item_task_from_a_file_counts_unknown_users_and_items(finished, tmp_path):
    rows = ["user_id,item_id"] + [f"u{u},i{1 + (u * 7) % N_ITEMS}" for u in range(120)]
    rows += ["u1,not-an-item", "ghost,i3"]
    (tmp_path / "likes.csv").write_text("\n".join(rows) + "\n")
    r = _add(finished, "--name", "likes", "--kind", "item_rec", "--labels", str(tmp_path / "likes.csv"))
    assert r.exit_code == 0, r.output
    data = json.loads(r.output.strip().splitlines()[-1])["data"]
    assert data["rows_of_users_not_in_stream"] == 1 and data["rows_of_items_not_in_catalogue"] == 1
    assert Predictor(finished).recommend("likes", HIST, k=3)["items"]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("user_id,label\nu1,A\nu2,\n", "classify", "row 2"),
        ("user_id,label\nu1,A\nu1,B\n", "classify", "more than one label (rows 1, 2)"),
        ("user_id,label\nu1,A\nu2,B\nu3,C\n", "binary", "exactly two distinct values"),
        ("user,label\nu1,A\n", "classify", "user_id"),
    ],
)
def test_bad_label_files_get_clear_errors(finished, tmp_path, text, kind, message):
    (tmp_path / "bad.csv").write_text(text)
    r = _add(finished, "--name", "T9", "--kind", kind, "--labels", str(tmp_path / "bad.csv"))
    assert r.exit_code != 0 and message in r.output + str(r.exception)
    run = json.loads((finished / "run.json").read_text())
    assert "T9" not in run["order"] and run["status"] == "complete"  # the run is as it was


def test_a_running_server_picks_up_an_added_task_on_reload(finished, tmp_path):
    from fastapi.testclient import TestClient

    from lifelongrec.serve import create_app

    rows = ["user_id,label"] + [f"u{u},{u % 2}" for u in range(120)]
    (tmp_path / "lab.csv").write_text("\n".join(rows) + "\n")
    with TestClient(create_app(finished)) as c:
        old = c.post("/recommend", json={"task": "T2", "history": HIST}).json()
        assert c.post("/classify", json={"task": "T5", "history": HIST}).status_code == 404
        r = _add(finished, "--name", "T5", "--kind", "binary", "--labels", str(tmp_path / "lab.csv"), "--positive", "1")
        assert r.exit_code == 0, r.output
        assert c.post("/classify", json={"task": "T5", "history": HIST}).status_code == 404  # not before a reload
        assert c.post("/reload").json() == {"added": ["T5"], "tasks": ["T1", "T2", "T3", "T5"]}
        got = c.post("/classify", json={"task": "T5", "history": HIST}).json()
        assert set(got["probabilities"]) == {"0", "1"}
        assert c.post("/recommend", json={"task": "T2", "history": HIST}).json() == old
        assert c.post("/reload").json()["added"] == []


def test_a_reload_refuses_an_adapter_that_does_not_fit_the_base(finished, tmp_path):
    from fastapi.testclient import TestClient

    from lifelongrec.serve import create_app

    rows = ["user_id,label"] + [f"u{u},{'x' if u % 2 else 'y'}" for u in range(120)]
    (tmp_path / "lab.csv").write_text("\n".join(rows) + "\n")
    with TestClient(create_app(finished)) as c:
        assert (
            _add(finished, "--name", "T6", "--kind", "classify", "--labels", str(tmp_path / "lab.csv")).exit_code == 0
        )
        cfg_file = finished / "adapters" / "T6" / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["base_fingerprint"] = "0" * 64
        cfg_file.write_text(json.dumps(cfg))
        r = c.post("/reload")
        assert r.status_code == 409 and "T6" in r.json()["detail"]
        assert [t["name"] for t in c.get("/tasks").json()] == ["T1", "T2", "T3"]


def test_a_reload_during_requests_loses_none(finished, tmp_path):
    """Requests for the old tasks keep being answered, unchanged, while a new task is added and loaded."""
    import threading
    import time

    from fastapi.testclient import TestClient

    from lifelongrec.serve import create_app

    rows = ["user_id,label"] + [f"u{u},{'p' if u % 2 else 'q'}" for u in range(120)]
    (tmp_path / "lab.csv").write_text("\n".join(rows) + "\n")
    with TestClient(create_app(finished)) as c:
        want = c.post("/recommend", json={"task": "T2", "history": HIST}).json()
        results: list = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                r = c.post("/recommend", json={"task": "T2", "history": HIST})
                results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        assert (
            _add(finished, "--name", "T7", "--kind", "classify", "--labels", str(tmp_path / "lab.csv")).exit_code == 0
        )
        assert c.post("/reload").json()["added"] == ["T7"]
        n = len(results)
        while len(results) < n + 20:  # requests after the reload too
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        assert c.post("/classify", json={"task": "T7", "history": HIST}).status_code == 200
    # Concurrent requests share micro-batches, whose scores may differ from a lone request's in the
    # last float bits (another matmul shape): the ranking is compared exactly, the scores closely.
    assert len(results) > 20 and all(code == 200 for code, _ in results)
    for _, body in results:
        assert [x["item"] for x in body["items"]] == [x["item"] for x in want["items"]]
        assert [x["score"] for x in body["items"]] == pytest.approx([x["score"] for x in want["items"]], abs=1e-5)


def test_a_parquet_label_file_with_numeric_ids(finished, tmp_path):
    """Parquet files keep their column types: numeric labels are read as text, as written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"uid": [f"u{u}" for u in range(120)], "tier": [u % 3 for u in range(120)]})
    pq.write_table(table, tmp_path / "tiers.parquet")
    r = _add(finished, "--name", "tier", "--kind", "classify", "--labels", str(tmp_path / "tiers.parquet"),
             "--format", "parquet", "--user", "uid", "--label", "tier")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert set(Predictor(finished).classify("tier", HIST)["probabilities"]) == {"0", "1", "2"}


def test_a_bad_training_setting_is_a_clear_error(finished, tmp_path):
    (tmp_path / "lab.csv").write_text("user_id,label\nu1,A\nu2,B\n")
    r = _add(finished, "--name", "T9", "--kind", "classify", "--labels", str(tmp_path / "lab.csv"), "--set", "lr=1e-3x")
    assert r.exit_code != 0 and "lr" in str(r.exception) and not isinstance(r.exception, ValueError)
