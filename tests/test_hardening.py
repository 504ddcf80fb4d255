"""Hardening of runs, artifacts and the command line (issue 15): nothing silently wrong, no traceback,
nothing written outside the run. One test per class of failure found by a hostile-user review; the
data layer's classes are in test_hardening_data.py, a command-line fuzz in test_cli_fuzz.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import synthetic_config
from typer.testing import CliRunner

from lifelongrec.cli import app
from lifelongrec.config import load_config
from lifelongrec.errors import ConfigError, LifelongrecError
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream

FAST = ["train.epochs=2", "train.patience=5"]
QUIET = {"log": lambda *_: None}


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lifelongrec.cli", *args], capture_output=True, text=True, env=env or os.environ.copy()
    )


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONGREC_CACHE", str(tmp / "cache"))
        cfg = load_config(synthetic_config(tmp), FAST)
        run_stream(cfg, "peterrec", tmp / "run", **QUIET)
    return tmp / "run", tmp / "cache", tmp / "synthetic.yaml"


# ---------------------------------------------------------------- silently wrong results


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    """A run folder is locked while a run writes it: the second process gets the holder's pid."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from lifelongrec.fsutil import exclusive_lock\n"
            f"with exclusive_lock({str(out)!r}, 'run folder'):\n    print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        cfg = load_config(synthetic_config(tmp_path), FAST)
        with pytest.raises(LifelongrecError, match=rf"in use by another lifelongrec process \(pid {holder.pid}\)"):
            run_stream(cfg, "finesmax", out, **QUIET)
        assert not (out / "run.json").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    run_stream(cfg, "finesmax", out, **QUIET)  # the lock died with its holder (kill -9 included)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_fresh_run_into_a_folder_that_holds_one_is_refused(finished):
    run, _, config = finished
    with pytest.raises(LifelongrecError, match="already holds a run; continue it with --resume"):
        run_stream(load_config(config, FAST), "peterrec", run, **QUIET)


def test_resume_refuses_options_it_would_ignore(finished):
    run, _, config = finished
    for extra in (["--method", "conure"], ["--config", str(config)], ["--set", "train.epochs=9"]):
        r = CliRunner().invoke(app, ["stream", "run", "--resume", str(run), *extra])
        assert isinstance(r.exception, LifelongrecError) and extra[0] in str(r.exception), r.output


def test_a_task_without_training_or_validation_examples_is_refused_before_training(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "split.fractions=[0,0,1]"])
    with pytest.raises(ConfigError, match=r"task T1: 0 training and 0 validation examples"):
        run_stream(cfg, "finesmax", tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "tasks").exists()
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "tasks.1.split={fractions: [0.9, 0.0, 0.1]}"])
    with pytest.raises(ConfigError, match=r"task T2: \d+ training and 0 validation examples"):
        run_stream(cfg, "finesmax", tmp_path / "run2", **QUIET)


def test_damaged_checkpoints_and_resume_state_are_refused_not_loaded(tmp_path):
    """Every safetensors file a resume loads is checked against the sha256 recorded beside it: a byte
    flipped inside the tensor data (header intact) is an error naming the file, not different weights."""
    cfg = load_config(synthetic_config(tmp_path), FAST)
    run_stream(cfg, "finesmax", tmp_path / "t1", order=["T1"], **QUIET)
    run_stream(cfg, "finesmax", tmp_path / "t12", order=["T1", "T2"], **QUIET)
    for target in ("state/method.safetensors", "tasks/T2/train/checkpoint/model.safetensors"):
        d = tmp_path / f"copy-{target.split('/')[0]}"
        shutil.copytree(tmp_path / "t1", d)  # T1 learned; T2 half-way: its checkpoint is on disk
        shutil.copytree(tmp_path / "t12" / "tasks" / "T2", d / "tasks" / "T2")
        f = d / target
        data = bytearray(f.read_bytes())
        data[-5] ^= 0xFF  # inside the last tensor's bytes; the header still parses
        f.write_bytes(bytes(data))
        with pytest.raises(LifelongrecError, match=rf"{f.name}: damaged or truncated"):
            run_stream(cfg, "finesmax", d, order=["T1", "T2"], resume=True, **QUIET)


# ---------------------------------------------------------------- writing outside the run


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "gender.v2", "a b", ""])
def test_task_names_are_plain_words(tmp_path, name):
    with pytest.raises(ConfigError, match=r"tasks\.1\.name"):
        load_config(synthetic_config(tmp_path), [f"tasks.1.name={json.dumps(name)}"])


def test_orphan_temporaries_of_a_killed_write_are_cleaned_by_the_next_run(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    junk = [run / "adapters" / "T2" / ".adapter.safetensors.abc.tmp", run / ".run.json.x1.tmp"]
    for j in junk:
        j.write_bytes(b"half")
    (run / "tasks" / ".state.old-123").mkdir()
    (run / "tasks" / ".x.y.tmp").mkdir()
    run_stream(load_config(finished[2], FAST), "peterrec", run, resume=True, **QUIET)
    left = [p for p in run.rglob(".*") if p.name != ".lock"]
    assert left == []


# ---------------------------------------------------------------- one-line errors, not tracebacks


def _copy(finished, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(finished[0], d)
    return d


@pytest.mark.parametrize(
    "damage, command, message",
    [
        ("matrix.csv=garbage", "report", "matrix.csv: expected a header row"),
        ("matrix.csv=after,T1,T2,T3\nT1,x\n", "report", "matrix.csv: line 2"),
        ("summary.json={", "report", "summary.json: not valid JSON"),
        ('summary.json={"method": 3}', "report", "summary.json: "),
        ("run.json=[]", "report", "run.json: expected a JSON object"),
        ("run.json={", "predict", "run.json: not valid JSON"),
        ('run.json={"version": 2}', "predict", "run.json: not a complete run description"),
        ("metrics.jsonl=truncated", "report", None),  # no phases to read: the report needs no metrics rows
        ("base/base.safetensors=half", "predict", "base.safetensors: sha256 differs"),
        ("adapters/T2/adapter.safetensors=\x00\x00", "predict", "adapter.safetensors: sha256 differs"),
    ],
)
def test_damaged_run_folder_gives_one_line(finished, tmp_path, damage, command, message):
    d = _copy(finished, tmp_path)
    target, content = damage.split("=", 1)
    f = d / target
    if content == "half":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif content == "truncated":
        f.write_text(f.read_text()[:50])
    else:
        f.write_text(content)
    args = ["report", str(d), "--no-plots"] if command == "report" else ["predict", str(d), "--task", "T2", "i1"]
    r = _cli(*args, env={**os.environ, "LIFELONGREC_CACHE": str(finished[1])})
    if message is None:
        assert r.returncode == 0, r.stderr
    else:
        assert message in _one_error_line(r)


def test_predict_inputs(finished, tmp_path):
    run = finished[0]
    env = {**os.environ, "LIFELONGREC_CACHE": str(finished[1])}
    f = tmp_path / "file"
    f.write_text("x")
    assert "not a folder" in _one_error_line(_cli("predict", str(f), "--task", "T2", "i1", env=env))
    latin = tmp_path / "h.tsv"
    latin.write_bytes("i1\ti2\ni3\tcaf\xe9\n".encode("latin-1"))
    assert "line 2: not UTF-8" in _one_error_line(
        _cli("predict", str(run), "--task", "T2", "--histories", str(latin), env=env)
    )
    r = _cli("predict", str(run), "--task", "T2", "--k", "-1", "i1", env=env)
    assert r.returncode == 2 and "--k" in r.stderr
    # the README's form: ids as arguments, one each; --history repeats; both give the same answer
    a = _cli("predict", str(run), "--task", "T2", "i1", "i2", "i3", env=env)
    b = _cli("predict", str(run), "--task", "T2", "--history", "i1", "--history", "i2", "--history", "i3", env=env)
    assert a.returncode == 0 and a.stdout == b.stdout and json.loads(a.stdout)["unknown_items"] == []


def test_resume_of_a_run_killed_while_writing_its_first_files_restarts_it(finished, tmp_path):
    """Killed right after run.json (which holds the config) was written: --resume restarts cleanly."""
    d = tmp_path / "run"
    d.mkdir()
    run = json.loads((finished[0] / "run.json").read_text())
    run["status"] = "running"
    (d / "run.json").write_text(json.dumps(run))
    env = {**os.environ, "LIFELONGREC_CACHE": str(finished[1])}
    r = _cli("-q", "stream", "run", "--resume", str(d), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((d / "run.json").read_text())["status"] == "complete"
    assert (d / "matrix.csv").read_text() == (finished[0] / "matrix.csv").read_text()


def test_report_without_matplotlib_is_one_line(finished, tmp_path):
    env = {**os.environ, "LIFELONGREC_CACHE": str(finished[1])}
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from lifelongrec.cli import main\n"
        "sys.argv = ['lifelongrec', 'report', sys.argv[1], '--out', sys.argv[2]]; main()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(finished[0]), str(tmp_path / "rep")], capture_output=True, text=True, env=env
    )
    assert "need matplotlib" in _one_error_line(r)


def test_predictor_answers_are_unchanged_by_a_reload(finished):
    """Guard for the checks above: a clean run folder still loads and answers deterministically."""
    p1, p2 = Predictor(finished[0]), Predictor(finished[0])
    assert p1.predict("T2", ["i1", "i2"]) == p2.predict("T2", ["i1", "i2"])
    assert time.time() > 0
