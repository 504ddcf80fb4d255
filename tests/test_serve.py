"""`lifelongrec serve`: every task of a finished run over HTTP, checked with FastAPI's test client."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from synthetic import synthetic_config

from lifelongrec.config import load_config
from lifelongrec.errors import LifelongrecError
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream
from lifelongrec.serve import api_key_from_env, create_app


def _trained_run(tmp_path_factory, method: str):
    """A finished run of `method` on the synthetic stream (2 epochs per task), in its own cache."""
    tmp = tmp_path_factory.mktemp(f"serve-{method}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONGREC_CACHE", str(tmp / "cache"))
        cfg = load_config(synthetic_config(tmp), ["train.epochs=2"])
        run_stream(cfg, method, tmp / "run", log=lambda *_: None)
    return tmp / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _trained_run(tmp_path_factory, "pcl")


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir)) as c:
        yield c


def test_health_ready_tasks_and_openapi(client, run_dir):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["tasks"] == 3
    tasks = {t["name"]: t for t in client.get("/tasks").json()}
    assert set(tasks) == {"T1", "T2", "T3"} and tasks["T3"]["kind"] == "classify" and tasks["T2"]["method"] == "pcl"
    cfg = json.loads((run_dir / "adapters" / "T2" / "adapter_config.json").read_text())
    assert (
        tasks["T2"]["adapter_sha256"] == cfg["sha256"]
        and tasks["T2"]["test_metrics"]["MRR@5"] == cfg["metrics"]["MRR@5"]
    )
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_answers_equal_the_predictors(client, run_dir):
    p = Predictor(run_dir)
    hist = ["i1", "i2", "i3", "nope"]
    r = client.post("/recommend", json={"task": "T2", "history": hist, "k": 5, "exclude_seen": True}).json()
    assert r == p.recommend("T2", hist, 5, True)
    assert r["unknown_items"] == ["nope"]
    c = client.post("/classify", json={"task": "T3", "history": hist}).json()
    assert c == p.classify("T3", hist) and c["class"] in ("F", "M")
    e = client.post("/embed", json={"task": "universal", "history": hist}).json()
    assert e["vector"] == pytest.approx(p.embed("universal", hist)["vector"]) and e["tasks"]


def test_candidates_restrict_the_ranking_and_unknown_ones_are_reported(client):
    r = client.post("/recommend", json={"task": "T2", "history": ["i1"], "k": 10, "candidates": ["i4", "i7", "zzz"]})
    body = r.json()
    assert r.status_code == 200 and {x["item"] for x in body["items"]} == {"i4", "i7"}
    assert body["unknown_candidates"] == ["zzz"]


def test_batches_answer_in_order_and_name_the_request_at_fault(client):
    reqs = [{"task": "T2", "history": ["i1"], "k": 3}, {"task": "T1", "history": ["i2", "i3"], "k": 2}]
    out = client.post("/recommend/batch", json={"requests": reqs}).json()
    assert [o["task"] for o in out] == ["T2", "T1"] and [len(o["items"]) for o in out] == [3, 2]
    bad = client.post(
        "/classify/batch", json={"requests": [{"task": "T3", "history": ["i1"]}, {"task": "T3", "history": ["x"]}]}
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("request 1: none of the 1 item ids")


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("/recommend", {"task": "T9", "history": ["i1"]}, 404, "unknown task 'T9'"),
        ("/recommend", {"task": "T3", "history": ["i1"]}, 422, "use /classify"),
        ("/classify", {"task": "T2", "history": ["i1"]}, 422, "use /recommend"),
        ("/recommend", {"task": "T2", "history": []}, 422, "at least 1 item"),
        ("/recommend", {"task": "T2", "history": ["i1"], "k": 0}, 422, "greater than or equal to 1"),
        ("/embed", {"task": "T2", "history": ["unknown"]}, 422, "none of the 1 item ids"),
        ("/recommend", {"task": "T2", "history": "i1"}, 422, "valid list"),
        ("/recommend", {"task": "T2", "history": ["i1"], "k": "many"}, 422, "valid integer"),
        ("/recommend", {"task": "T2", "history": ["i1"], "k": 1001}, 422, "less than or equal to 1000"),
        ("/classify", {"history": ["i1"]}, 422, "Field required"),
        ("/recommend/batch", {"requests": [{"task": "T2", "history": ["i1"]}] * 257}, 422, "at most 256"),
        ("/recommend/batch", {"requests": []}, 422, "at least 1"),
    ],
)
def test_bad_requests_get_clear_errors(client, route, body, status, message):
    r = client.post(route, json=body)
    assert r.status_code == status and message in json.dumps(r.json())


def test_api_key(run_dir, monkeypatch):
    monkeypatch.setenv("LLR_KEY", "s3cret")
    with TestClient(create_app(run_dir, api_key_from_env("LLR_KEY"))) as c:
        assert c.get("/health").status_code == 200  # probes need no key
        assert c.get("/tasks").status_code == 401
        assert c.get("/tasks", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/tasks", headers={"X-API-Key": "s3cret"}).status_code == 200
    monkeypatch.delenv("LLR_KEY")
    with pytest.raises(LifelongrecError, match="LLR_KEY is not set"):
        api_key_from_env("LLR_KEY")


def test_an_adapter_that_does_not_match_the_base_stops_the_start(run_dir, tmp_path):
    import shutil

    bad = tmp_path / "run"
    shutil.copytree(run_dir, bad)
    cfg_file = bad / "adapters" / "T2" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_fingerprint"] = "0" * 64
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(LifelongrecError, match="T2"), TestClient(create_app(bad)):
        pass


def _concurrently(client, bodies, route="/recommend"):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: client.post(route, json=b), bodies))


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(run_dir):
    from lifelongrec.serve import Batching

    p = Predictor(run_dir)
    hists = [[f"i{1 + (i % 9)}", f"i{1 + (i * 7) % 11}"] for i in range(24)]
    bodies = [{"task": "T2", "history": h, "k": 1 + i % 4} for i, h in enumerate(hists)]
    with TestClient(create_app(run_dir, batching=Batching(max_batch=64, max_wait_ms=50))) as c:
        rs = _concurrently(c, bodies)
        stats = c.get("/stats").json()
    for b, r in zip(bodies, rs):
        one = p.recommend("T2", b["history"], b["k"])
        assert r.status_code == 200 and [x["item"] for x in r.json()["items"]] == [x["item"] for x in one["items"]]
    assert stats["requests"] == 24 and stats["batches"] < 24  # some requests shared a pass


def test_without_batching_every_request_runs_alone(run_dir):
    from lifelongrec.serve import Batching

    with TestClient(create_app(run_dir, batching=Batching(max_batch=1))) as c:
        r = c.post("/classify", json={"task": "T3", "history": ["i1"]})
        stats = c.get("/stats").json()
        assert r.status_code == 200 and (stats["batching"], stats["batches"], stats["server_ms"]["answered"]) == (
            False,
            0,
            1,
        )


def test_a_full_queue_answers_429_with_retry_after(run_dir, monkeypatch):
    import time

    from lifelongrec.serve import Batching

    slow = Predictor.recommend_many

    def recommend_many(self, *a, **kw):
        time.sleep(0.3)
        return slow(self, *a, **kw)

    monkeypatch.setattr(Predictor, "recommend_many", recommend_many)
    with TestClient(create_app(run_dir, batching=Batching(max_batch=2, max_wait_ms=0, queue_size=1))) as c:
        rs = _concurrently(c, [{"task": "T2", "history": ["i1"]}] * 8)
    codes = sorted(r.status_code for r in rs)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}
    assert next(r for r in rs if r.status_code == 429).headers["retry-after"] == "1"


def test_one_bad_request_in_a_micro_batch_fails_alone(run_dir):
    from lifelongrec.serve import Batching

    bodies = [{"task": "T3", "history": ["i1"]}, {"task": "T3", "history": ["unknown"]}] * 4
    with TestClient(create_app(run_dir, batching=Batching(max_batch=64, max_wait_ms=50))) as c:
        rs = _concurrently(c, bodies, "/classify")
    assert [r.status_code for r in rs] == [200, 422] * 4


@pytest.fixture(scope="module")
def finesmax_dir(tmp_path_factory):
    return _trained_run(tmp_path_factory, "finesmax")


def test_tasks_that_read_the_base_alone_share_one_forward_pass(finesmax_dir, run_dir):
    """FineSmax's tasks all read the frozen base (no view of their own) through the same input, so
    requests for different tasks and operations share one forward pass, each answered by its own head
    as if alone; PCL's prompted tasks never share (their prompts enter the input)."""
    import asyncio

    from lifelongrec.batching import MicroBatcher, Pending

    p = Predictor(finesmax_dir)
    assert p.pass_key("T1") == p.pass_key("T2") == p.pass_key("T3") is not None
    pcl = Predictor(run_dir)
    assert pcl.pass_key("T2") is None and pcl.pass_key("T3") is None

    hists = [["i1", "i2", "i3"], ["i5"], ["i7", "i8", "i9", "i10", "x"], ["i2", "i4"]]

    async def answer(shared: bool) -> tuple[list, int]:
        b = MicroBatcher(p, shared_pass=shared)
        groups = [
            [Pending("recommend", "T2", h, k=3) for h in hists[:2]],
            [Pending("recommend", "T1", h, k=2, exclude_seen=True) for h in hists[1:]],
            [Pending("classify", "T3", h) for h in hists],
            [Pending("classify", "T2", hists[0])],  # the wrong operation for T2: fails alone
        ]
        keys = {b._pass_key(g[0].task) for g in groups}
        assert len(keys) == 1
        await (b._run_pass(groups) if shared else asyncio.gather(*(b._run_pass([g]) for g in groups)))
        out = [[q.future.exception() or q.future.result() for q in g] for g in groups]
        return out, b.batches

    shared, n_shared = asyncio.run(answer(True))
    alone, n_alone = asyncio.run(answer(False))
    assert (n_shared, n_alone) == (1, 4)
    for gs, ga in zip(shared[:3], alone[:3]):
        for s, a in zip(gs, ga):
            if "items" in a:
                assert [x["item"] for x in s["items"]] == [x["item"] for x in a["items"]]
                assert [x["score"] for x in s["items"]] == pytest.approx([x["score"] for x in a["items"]], abs=1e-5)
            else:
                assert s["class"] == a["class"]
                assert s["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)
            assert s["unknown_items"] == a["unknown_items"]
    assert shared[2][2]["unknown_items"] == ["x"]
    assert isinstance(shared[3][0], LifelongrecError) and "use recommend" in str(shared[3][0])
