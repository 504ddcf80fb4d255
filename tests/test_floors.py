"""Each task of a finished run against its floor (lifelongrec.floors): the model rebuilt from the run's
artifacts ranks exactly as the run evaluated it, the floors are the reference rows' own, and a model
that learned the synthetic ring clears them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import synthetic_config
from typer.testing import CliRunner

from lifelongrec import floors
from lifelongrec.cli import app
from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.references import majority, most_popular
from lifelongrec.runner import run_stream


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("floors")
    cfg = load_config(synthetic_config(folder, epochs=8))
    out = folder / "stl"
    run_stream(cfg, "stl", out, log=lambda *_: None)
    stream, _ = open_stream(cfg)
    return cfg, stream, out


def test_floors_agree_with_the_run_and_the_references(learned):
    cfg, stream, out = learned
    rows = {r["task"]: r for r in floors.floors(out, stream)}
    assert list(rows) == ["T1", "T2", "T3"]
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["test_after"]
    for t in ("T1", "T2"):  # the rebuilt model ranks as the run evaluated it; popularity as the reference row
        r = rows[t]
        assert r["model"] == pytest.approx(recorded[t]["MRR@5"], abs=1e-9)
        assert r["reference"] == pytest.approx(most_popular(stream, t, cfg.train, cfg.input_length(cfg.train))["MRR@5"])
        assert r["difference"] == pytest.approx(r["model"] - r["reference"])
        assert r["ci95"][0] <= r["difference"] <= r["ci95"][1]
    t3 = rows["T3"]
    assert t3["model"] == pytest.approx(recorded["T3"]["accuracy"])
    assert t3["reference"] == pytest.approx(majority(stream, "T3")["accuracy"])
    # the ring's next item and the rated-4 item are predictable: the model clears popularity on both
    assert rows["T1"]["p"] < 0.05 and rows["T2"]["p"] < 0.05
    text = floors.render(list(rows.values()))
    assert "| T2 |" in text and "| yes |" in text


def test_a_model_no_better_than_popularity_does_not_count_as_learned(learned, monkeypatch):
    _, stream, out = learned
    # rank every target exactly where popularity ranks it: no difference, p = 1, not learned
    from lifelongrec.references import most_popular_ranks

    def as_popular(run, task, stream):
        td = stream.task(task)
        te = td.split == 2
        cfg = floors._config(run)
        ranks = most_popular_ranks(stream, task, cfg.train, cfg.input_length(cfg.train))
        return ranks, np.stack([td.user[te], td.end[te], td.target[te]], axis=1).astype(np.int64)

    monkeypatch.setattr(floors, "test_ranks", as_popular)
    r = floors.item_floor(out, "T2", stream)
    assert r["difference"] == 0.0 and r["p"] == 1.0 and "| no |" in floors.render([r])


def test_profile_floor_reads_the_recorded_discordant_users():
    r = floors.profile_floor(
        "T4", "classify", {"accuracy": 0.75, "examples": 100, "wins_vs_majority": 9, "losses_vs_majority": 1}
    )
    assert r is not None and r["reference"] == pytest.approx(0.67) and r["p"] < 0.05
    assert floors.profile_floor("T4", "classify", {"accuracy": 0.7, "examples": 100}) is None  # an older run


def test_report_floors_writes_them_beside_the_report(learned, tmp_path):
    _, _, out = learned
    r = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "rep"), "--no-plots", "--floors"])
    assert r.exit_code == 0, r.output
    assert "Against the floor" in r.output and "most popular items (MRR@5)" in r.output
    rows = json.loads((tmp_path / "rep" / "stl" / "floors.json").read_text())
    assert [x["task"] for x in rows] == ["T1", "T2", "T3"]
