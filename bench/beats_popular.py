"""Does a run's model beat the most popular items, example by example? (issue 16, item 6)

For each run and item task (next_item and item_rec), every test target is ranked by the run's model
(rebuilt from its artifacts exactly as the run evaluated it: full ranking, its exclude_seen) and by the
most popular items (its count among the task's training targets, `lifelongrec.references`), on the
same test examples. Reported: both MRR@5, their difference with a 95% paired bootstrap interval
(2,000 resamples of test examples, seed 0), and the one-sided paired t-test of "the model's reciprocal
rank@5 is higher" over the examples. A model "clearly learned" a task when that p is below 0.05.

    python bench/beats_popular.py runs/bench/ml100k-quick/seed-0/conure --tasks T1 T2 T3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from cold_start import test_ranks
from scipy import stats

from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST
from lifelongrec.references import most_popular_ranks


def rr_at(ranks: np.ndarray, k: int = 5) -> np.ndarray:
    return np.where(ranks <= k, 1.0 / ranks, 0.0)


def compare(run: Path, task: str, resamples: int = 2000) -> dict:
    model, rows, _ = test_ranks(run, task)
    cfg = StreamConfig.model_validate(json.loads((run / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    td = stream.task(task)
    index = int(next(i for i, t in enumerate(cfg.tasks) if t.name == task))
    train = cfg.train_for(index, task)
    pop = most_popular_ranks(stream, task, train, cfg.input_length(train))
    te = td.split == TEST
    pop_rows = np.stack([td.user[te], td.end[te], td.target[te]], axis=1).astype(np.int64)
    # Both sides list the same examples in different orders: pair them by (user, end, target).
    a, b = np.lexsort(rows.T[::-1]), np.lexsort(pop_rows.T[::-1])
    if not np.array_equal(rows[a], pop_rows[b]):
        raise SystemExit(f"{run} {task}: the run's test examples are not the stream's")
    m, p = rr_at(model[a].astype(float)), rr_at(pop[b].astype(float))
    diff = m - p
    rng = np.random.default_rng(0)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
    t = stats.ttest_rel(m, p, alternative="greater")
    return {
        "run": str(run),
        "task": task,
        "examples": len(diff),
        "model_MRR@5": float(m.mean()),
        "popular_MRR@5": float(p.mean()),
        "difference": float(diff.mean()),
        "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "p_one_sided": float(t.pvalue),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--tasks", nargs="+", default=["T1", "T2", "T3"])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    print("| run | task | test examples | model MRR@5 | most popular MRR@5 | difference [95% CI] | p (one-sided) |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        for task in args.tasks:
            r = compare(run, task)
            rows.append(r)
            lo, hi = r["ci95"]
            print(
                f"| {run} | {task} | {r['examples']:,} | {r['model_MRR@5']:.4f} | {r['popular_MRR@5']:.4f} | "
                f"{r['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {r['p_one_sided']:.2g} |"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
