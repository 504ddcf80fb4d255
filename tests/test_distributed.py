"""Data parallelism under torchrun (issue 20): T1 pretraining in 2 CPU processes with gloo against 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from synthetic import synthetic_config

from lifelongrec.artifacts import load_backbone
from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST
from lifelongrec.objectives import NextItemObjective
from lifelongrec.pretrain import t1_net

SETS = ["--set", "train.epochs=3", "--set", "train.threads=1", "--set", "model.dropout=0.0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pretrain(config, out, nproc: int) -> dict:
    cache = str(out.parent / "cache")  # the processes of a run share one cache
    env = {**os.environ, "LIFELONGREC_CACHE": cache, "LIFELONGREC_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lifelongrec", "pretrain", "--config", str(config), "--out", str(out), *SETS]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", *cmd[2:]]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "backbone.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    config = synthetic_config(tmp)
    return config, _pretrain(config, tmp / "one", 1), _pretrain(config, tmp / "two", 2), tmp


def test_two_processes_learn_t1_as_one_within_tolerance(runs):
    """A step of 2 processes is one step on 2 batches, so the runs differ, but not by much: the test
    MRR@5 of the synthetic ring task within 0.1, and both far above chance (1/20 items)."""
    _, one, two, _ = runs
    a, b = one["test"]["MRR@5"], two["test"]["MRR@5"]
    assert abs(a - b) <= 0.1 and min(a, b) > 0.2
    assert one["epochs_run"] == two["epochs_run"] == 3
    # Each epoch logs every process's peak memory, in rank order.
    _, _, _, tmp = runs
    for folder, n in (("one", 1), ("two", 2)):
        rows = [json.loads(x) for x in (tmp / folder / "train" / "metrics.jsonl").read_text().splitlines()]
        assert all(len(r["peak_rss_mib"]) == n and min(r["peak_rss_mib"]) > 10 for r in rows)


def test_distributed_evaluation_counts_every_example_once_and_exactly(runs):
    """Rank 0's recorded test metrics (each rank ranked its chunks, gathered) equal a single-process
    evaluation of the saved weights to the last digit."""
    config, _, two, tmp = runs
    cfg = StreamConfig.model_validate(two["config"])
    stream, _ = open_stream(cfg)
    backbone, head, _ = load_backbone(tmp / "two")
    obj = NextItemObjective(stream, "T1", t1_net(backbone, head), cfg)
    again = obj.evaluate(TEST)
    assert again["examples"] == two["test"]["examples"] == stream.task("T1").size(TEST)
    assert {k: again[k] for k in ("MRR@5", "HR@5")} == {k: two["test"][k] for k in ("MRR@5", "HR@5")}


def _stream_run(config, out, nproc: int, method: str) -> dict:
    cache = str(out.parent / "cache")
    env = {**os.environ, "LIFELONGREC_CACHE": cache, "LIFELONGREC_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    args = ["stream", "run", "--config", str(config), "--method", method, "--out", str(out), *SETS]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "lifelongrec", *args]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("method", ["conure", "pcl"])
def test_a_stream_runs_in_two_processes_without_forgetting(runs, method):
    """Under DDP a masked-gradient method (Conure) keeps the weights earlier tasks own bit for bit: the
    earlier tasks' test metrics never move (zero forgetting, exactly), as in one process."""
    from synthetic import read_matrix

    config, _, _, tmp = runs
    s = _stream_run(config, tmp / f"stream-{method}", 2, method)
    R = read_matrix(tmp / f"stream-{method}")
    assert len(R) == 3 and R[1][0] == R[0][0] and R[2][0] == R[0][0] and R[2][1] == R[1][1]
    assert s["final"][0] > 0.2  # T1 learned


def test_the_bench_runs_in_two_processes_and_rank_0_reports(runs):
    config, _, _, tmp = runs
    cache = str(tmp / "cache")
    env = {**os.environ, "LIFELONGREC_CACHE": cache, "LIFELONGREC_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    args = [
        "bench",
        "--config",
        str(config),
        "--methods",
        "finesmax,conure",
        "--seeds",
        "1",
        "--out",
        str(tmp / "b"),
        *SETS,
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "lifelongrec", *args]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("| conure |") == 1  # one report, from rank 0
    result = json.loads((tmp / "b" / "bench.json").read_text())
    assert (
        set(result["methods"]) >= {"finesmax", "conure"} if "methods" in result else (tmp / "b" / "report.md").is_file()
    )


def test_the_multi_node_command_line_runs_on_one_node(runs):
    """README's several-machines form (torchrun's c10d rendezvous instead of a master address), here
    with one node of 2 processes: it trains the run the master-address form trains, to the last digit."""
    config, _, two, tmp = runs
    out = tmp / "rdzv"
    env = {**os.environ, "LIFELONGREC_CACHE": str(tmp / "cache"), "LIFELONGREC_DIST_BACKEND": "gloo"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--node-rank", "0",
           "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
           "--rdzv-id", "lifelongrec-test", "-m", "lifelongrec", "pretrain", "--config", str(config),
           "--out", str(out), *SETS]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["weights_sha256"] == two["weights_sha256"]
    assert meta["test"]["MRR@5"] == two["test"]["MRR@5"]
