"""bench/task_orders.py keeps per-seed results for later sessions (--reuse); results learned from one
pretrained T1 must not be mixed with orders learned from another (a T1 pretrained again on another
machine kind is a different model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import task_orders  # noqa: E402


def _bench(tmp_path: Path, weights: bytes) -> argparse.Namespace:
    t1 = tmp_path / "bench" / "seed-0" / "T1"
    t1.mkdir(parents=True)
    (t1 / "backbone.safetensors").write_bytes(weights)
    return argparse.Namespace(bench=tmp_path / "bench", t1=None)


def test_kept_results_of_the_same_t1_are_taken(tmp_path):
    args = _bench(tmp_path, b"weights")
    here = task_orders.t1_identity(args, 0, None)
    assert len(here) == 64
    assert task_orders.t1_identity(args, 0, here) == here


def test_kept_results_of_another_t1_are_refused(tmp_path):
    args = _bench(tmp_path, b"weights")
    with pytest.raises(SystemExit, match="seed 0: the results kept in --reuse were learned from a T1"):
        task_orders.t1_identity(args, 0, "0" * 64)


def test_kept_results_without_a_t1_here_keep_their_hash(tmp_path):
    args = argparse.Namespace(bench=tmp_path / "empty", t1=None)
    assert task_orders.t1_identity(args, 3, "ab" * 32) == "ab" * 32
    assert task_orders.t1_identity(args, 3, None) == "unknown"


def test_reuse_reads_finals_by_seed_and_order_and_checks_the_method(tmp_path):
    held = {
        "method": "pcl",
        "seeds": [0, 2],
        "t1_sha256": {"0": "a" * 64, "2": "b" * 64},
        "finals": {"T1,T2": [{"T1": 0.1, "T2": 0.2}, {"T1": 0.3, "T2": 0.4}]},
    }
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(held))
    finals, hashes = task_orders.reused(path, "pcl")
    assert finals[2, "T1,T2"] == {"T1": 0.3, "T2": 0.4}
    assert hashes["2"] == "b" * 64
    with pytest.raises(SystemExit, match="holds the orders of 'pcl', not 'conure'"):
        task_orders.reused(path, "conure")


def test_several_reuse_files_merge_and_a_later_file_replaces_a_seed_whole(tmp_path):
    def write(name: str, seed: int, digest: str, orders: dict) -> Path:
        held = {"method": "pcl", "seeds": [seed], "t1_sha256": {str(seed): digest}, "finals": orders}
        (tmp_path / name).write_text(json.dumps(held))
        return tmp_path / name

    a = write("a.json", 1, "a" * 64, {"T1,T2": [{"T2": 1}], "T1,T3": [{"T3": 1}]})
    b = write("b.json", 2, "b" * 64, {"T1,T2": [{"T2": 2}]})
    kept, hashes = task_orders.kept_results([a, b], "pcl")
    assert kept == {(1, "T1,T2"): {"T2": 1}, (1, "T1,T3"): {"T3": 1}, (2, "T1,T2"): {"T2": 2}}
    assert hashes == {"1": "a" * 64, "2": "b" * 64}
    c = write("c.json", 1, "c" * 64, {"T1,T2": [{"T2": 9}]})  # seed 1 again, from another T1
    kept, hashes = task_orders.kept_results([a, c], "pcl")
    assert kept == {(1, "T1,T2"): {"T2": 9}}  # nothing of a.json's seed 1 is left to mix with it
    assert hashes == {"1": "c" * 64}


def test_report_only_reads_complete_runs_and_leaves_out_a_seed_with_an_order_missing(tmp_path):
    out = tmp_path / "orders-pcl"
    run = out / "seed-0" / "T1-T2"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "complete", "order": ["T1", "T2"]}))
    rows = [
        {"task": "T1", "metric": "MRR@5", "test_after": {"T1": {"MRR@5": 0.02}}},
        {"task": "T2", "metric": "MRR@5", "test_after": {"T1": {"MRR@5": 0.02}, "T2": {"MRR@5": 0.007}}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = argparse.Namespace(
        bench=tmp_path / "bench", t1=None, method="pcl", orders=["T1,T2"], overrides=[], report_only=True
    )
    assert task_orders.seed_finals(args, out, 0, {}) == {"T1,T2": {"T1": 0.02, "T2": 0.007}}
    assert task_orders.seed_finals(args, out, 1, {}) is None  # nothing learned in report mode
    assert task_orders.seed_finals(args, out, 1, {(1, "T1,T2"): {"T2": 0.5}}) == {"T1,T2": {"T2": 0.5}}


def test_the_table_pairs_orders_by_seed_and_does_not_average_metrics_of_different_kinds():
    result = {
        "T1,T2,T4": [{"T1": 0.02, "T2": 0.006, "T4": 0.71}, {"T1": 0.03, "T2": 0.008, "T4": 0.72}],
        "T1,T4,T2": [{"T1": 0.02, "T2": 0.007, "T4": 0.73}, {"T1": 0.03, "T2": 0.008, "T4": 0.75}],
    }
    text = task_orders.table("pcl", [0, 1], result)
    assert "| order | T1 | T2 | T4 |" in text and "mean" not in text.split("\n\n", 1)[1]
    assert "| Order2 T1,T4,T2 | 0.0250 ± 0.0071 [0.0200, 0.0300] | 0.0075 ± 0.0007 [0.0070, 0.0080] (p=0.5) |" in text


def test_relearn_returns_the_t1_here_instead_of_refusing(tmp_path):
    args = _bench(tmp_path, b"weights")
    here = task_orders.t1_identity(args, 0, None)
    assert task_orders.t1_identity(args, 0, "0" * 64, relearn=True) == here


def test_branch_only_learns_each_seeds_conure_branch_point_and_nothing_else(tmp_path, monkeypatch):
    learned = []
    monkeypatch.setattr(
        task_orders, "stream_run", lambda run, config, method, order, *rest: learned.append((run, method, order, rest))
    )
    bench = tmp_path / "bench"
    argv = ["task_orders.py", "--bench", str(bench), "--seeds", "0", "2", "--set", "train.threads=1", "--branch-only"]
    monkeypatch.setattr(sys, "argv", [*argv, "--method", "conure"])
    task_orders.main()
    out = bench / "orders-conure"
    assert [(run, method, order) for run, method, order, _ in learned] == [
        (out / "seed-0" / "T1", "conure", "T1"),
        (out / "seed-2" / "T1", "conure", "T1"),
    ]
    # each from its own seed's pretrained T1, with its own train.seed
    assert learned[1][3] == (bench / "seed-2" / "T1", ["train.threads=1", "train.seed=2"])
    assert not (out / "orders.json").exists()  # no report: the orders have not run
    monkeypatch.setattr(sys, "argv", [*argv, "--method", "pcl"])
    with pytest.raises(SystemExit, match="--branch-only is for --method conure"):
        task_orders.main()
