"""Predictions on raw histories with external ids, from a finished synthetic stream run."""

from __future__ import annotations

import json

import pytest
from synthetic import synthetic_config
from typer.testing import CliRunner

from lifelongrec.cli import app
from lifelongrec.config import load_config
from lifelongrec.errors import LifelongrecError
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream

ALL_METHODS = ["peterrec", "stl", "conure", "seqft", "sinmo", "finesmax", "mtl", "pcl", "mptrec", "mptrec_faithful"]


@pytest.fixture(scope="module", params=ALL_METHODS)
def run_dir(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONGREC_CACHE", str(tmp / "cache"))
        cfg = load_config(synthetic_config(tmp), ["train.epochs=3"])
        run_stream(cfg, request.param, tmp / "run", log=lambda *_: None)
    return tmp / "run"


def test_recommend_classify_embed(run_dir):
    p = Predictor(run_dir)
    r = p.recommend("T2", ["i1", "i2", "i3", "nope"], k=5, exclude_seen=True)
    assert len(r["items"]) == 5 and r["unknown_items"] == ["nope"]
    assert not {"i1", "i2", "i3"} & {x["item"] for x in r["items"]}
    assert all(a["score"] >= b["score"] for a, b in zip(r["items"], r["items"][1:]))
    c = p.classify("T3", ["i4", "i5"])
    assert c["class"] in ("F", "M") and abs(sum(c["probabilities"].values()) - 1) < 1e-5
    assert len(p.embed("T1", ["i4"])["vector"]) == 16


def test_predictor_reproduces_the_runs_test_metric(run_dir, monkeypatch):
    """Rebuilt from the artifacts alone, the T2 network ranks T2's test targets exactly as the run did."""
    from lifelongrec.config import StreamConfig
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TEST

    monkeypatch.setenv("LIFELONGREC_CACHE", str(run_dir.parent / "cache"))
    cfg = StreamConfig.model_validate(json.loads((run_dir / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    td = stream.task("T2")
    p = Predictor(run_dir)
    ranks = []
    for u, end, t in zip(td.user[td.split == TEST], td.end[td.split == TEST], td.target[td.split == TEST]):
        hist = [stream.items[i] for i in stream.seq_items[stream.offsets[u] : stream.offsets[u] + end]]
        scores = {x["item"]: x["score"] for x in p.recommend("T2", hist, k=stream.n_items)["items"]}
        target = scores[stream.items[t]]
        ranks.append(sum(1 for k, v in scores.items() if v >= target and k != stream.items[t]) + 1)
    mrr5 = sum(1 / r for r in ranks if r <= 5) / len(ranks)
    recorded = json.loads((run_dir / "adapters" / "T2" / "adapter_config.json").read_text())["metrics"]["MRR@5"]
    assert mrr5 == pytest.approx(recorded, abs=1e-6)


@pytest.mark.parametrize(
    "task, history, message",
    [
        ("T9", ["i1"], "unknown task 'T9'"),
        ("T2", [], "empty history"),
        ("T2", ["x", "y"], "none of the 2 item ids"),
        ("T3", ["i1"], None),
    ],
)
def test_bad_inputs(run_dir, task, history, message):
    p = Predictor(run_dir)
    if message is None:
        with pytest.raises(LifelongrecError, match="profile task"):
            p.recommend(task, history)
        return
    with pytest.raises(LifelongrecError, match=message):
        p.predict(task, history)


def test_cli_predict_with_histories_file(run_dir, tmp_path):
    f = tmp_path / "h.tsv"
    f.write_text("i1\ti2\ti3\ni9\ti10\n")
    r = CliRunner().invoke(app, ["predict", str(run_dir), "--task", "T2", "--histories", str(f), "--k", "3"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert len(lines) == 2 and len(lines[0]["items"]) == 3
    bad = tmp_path / "bad.tsv"
    bad.write_text("i1\n\n")
    r = CliRunner().invoke(app, ["predict", str(run_dir), "--task", "T2", "--histories", str(bad)])
    assert r.exit_code != 0 and "line 2" in str(r.exception)


def test_many_histories_in_one_pass_answer_as_one_at_a_time(run_dir):
    """The batched forms (what the server's micro-batches call) left-pad histories of different
    lengths into one batch: every answer equals the one-history answer."""
    p = Predictor(run_dir)
    hists = [["i1"], ["i2", "i3", "i4", "i5", "nope"], ["i6", "i1"]]
    many = p.recommend_many("T2", hists, k=4, exclude_seen=True)
    for h, got in zip(hists, many):
        one = p.recommend("T2", h, k=4, exclude_seen=True)
        assert [x["item"] for x in got["items"]] == [x["item"] for x in one["items"]]
        assert [x["score"] for x in got["items"]] == pytest.approx([x["score"] for x in one["items"]], abs=1e-5)
        assert got["unknown_items"] == one["unknown_items"]
    for h, got in zip(hists, p.classify_many("T3", hists)):
        one = p.classify("T3", h)
        assert got["class"] == one["class"]
        assert got["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
    for h, got in zip(hists, p.embed_many("T1", hists)):
        assert got["vector"] == pytest.approx(p.embed("T1", h)["vector"], abs=1e-5)
    with pytest.raises(LifelongrecError, match="history 1: none of the 1 item ids"):
        p.recommend_many("T2", [["i1"], ["nope"]])
