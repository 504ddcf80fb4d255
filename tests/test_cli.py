"""The command line, end to end on synthetic files."""

from __future__ import annotations

import json

from conftest import stream_yaml, write
from typer.testing import CliRunner

from lifelongrec.cli import app

runner = CliRunner()


def test_prepare_and_stats_from_config(tmp_path, ratings_csv, users_csv):
    cfg = stream_yaml(tmp_path, ratings_csv, users_csv)
    out = tmp_path / "prepared"
    r = runner.invoke(app, ["data", "prepare", "--config", str(cfg), "--out", str(out), "--set", "split.seed=3"])
    assert r.exit_code == 0, r.output
    assert "T2" in r.output and (out / "manifest.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["split"]["seed"] == 3 and manifest["users_dropped_short"] == 1
    r = runner.invoke(app, ["data", "stats", "--config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["users"] == 5 and s["tasks"]["T2"]["target_items"] == 5
    assert s["tasks"]["T3"]["classes"] == {"F": 2, "M": 3}


def test_stats_of_any_file(tmp_path):
    p = write(tmp_path / "log.tsv", "uid\tiid\tts\tstars\na\tx\t1\t5\na\ty\t1\t4\nb\tx\t2\t3\n")
    r = runner.invoke(
        app,
        [
            "data",
            "stats",
            "--path",
            str(p),
            "--format",
            "tsv",
            "--user",
            "uid",
            "--item",
            "iid",
            "--timestamp",
            "ts",
            "--rating",
            "stars",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert (s["events"], s["users"], s["items"], s["timestamp_ties"]) == (3, 2, 2, 1)
    assert s["values"]["stars"] == {"3": 1, "4": 1, "5": 1}


def test_stats_of_conure_file(tmp_path):
    p = write(tmp_path / "original_desen_gender.csv", "0,1,2,,1\n3,4,5,,0\n0,0,6,,1\n")
    r = runner.invoke(app, ["data", "stats", "--path", str(p), "--format", "conure"])
    assert r.exit_code == 0, r.output
    assert "3 sequences, 3 examples" in r.output and "targets: 0:1 1:2" in r.output


def test_stats_needs_exactly_one_input():
    r = runner.invoke(app, ["data", "stats"])
    assert r.exit_code != 0


def test_run_is_the_whole_job_and_resumes(tmp_path):
    from synthetic import synthetic_config

    cfg = synthetic_config(tmp_path, epochs=2)
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", "--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "stream synthetic" in r.output and "| conure |" in r.output and "| conure- (before pruning) |" in r.output
    assert (out / "report" / "report.md").is_file()
    # and says whether each task cleared its floor (most popular items, majority class)
    assert "Against the floor" in r.output and (out / "report" / "floors.json").is_file()
    again = runner.invoke(app, ["run", "--config", str(cfg), "--out", str(out)])
    assert again.exit_code == 0 and "resumed" in again.output


def test_resume_refuses_options_that_would_change_the_run(tmp_path):
    r = runner.invoke(
        app, ["stream", "run", "--resume", str(tmp_path), "--branch-from", str(tmp_path), "--order", "T1"]
    )
    assert r.exit_code != 0  # the console entry point prints LifelongrecError as one line (test_errors)
    assert "drop --order, --branch-from" in str(r.exception)
