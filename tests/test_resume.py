"""Kill a real `stream run` subprocess with SIGKILL mid-task; `--resume` must finish the stream with
exactly the matrix of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from synthetic import synthetic_config

from lifelongrec.config import load_config
from lifelongrec.runner import run_stream

SETTINGS = ["train.epochs=12", "train.patience=12"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lifelongrec.cli", "stream", "run", *args]


@pytest.mark.parametrize(
    "method, task",
    # PCL is killed in T3, whose contextual prompt attends over T2's cached prompt; mptrec_faithful in
    # its joint stage 1 (T2 with T1's loss through the trainable backbone)
    [("peterrec", "T2"), ("pcl", "T3"), ("mptrec_faithful", "T2")],
)
def test_kill_9_mid_task_then_resume_matches_uninterrupted(tmp_path, method, task):
    cfg_path = synthetic_config(tmp_path, "nextitnet")
    ref = tmp_path / "ref"
    run_stream(load_config(cfg_path, SETTINGS), method, ref, log=lambda *_: None)

    run = tmp_path / "killed"
    sets = [x for s in SETTINGS for x in ("--set", s)]
    proc = subprocess.Popen(
        _cli("--config", str(cfg_path), "--method", method, "--out", str(run), *sets),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    target = run / "tasks" / task / "train" / "checkpoint" / "state.json"
    deadline = time.time() + 600  # generous: a loaded machine can take minutes to import torch and reach T2
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert json.loads((run / "run.json").read_text())["status"] == "running"

    done = subprocess.run(_cli("--resume", str(run)), capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stderr  # progress is logged on stderr
    assert (run / "matrix.csv").read_text() == (ref / "matrix.csv").read_text()
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
