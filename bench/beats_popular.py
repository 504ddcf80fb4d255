"""Does a run's model beat the most popular items, example by example? (issue 16, item 6)

For each run and item task (next_item and item_rec), every test target is ranked by the run's model
(rebuilt from its artifacts exactly as the run evaluated it: full ranking, its exclude_seen) and by the
most popular items (its count among the task's training targets, `lifelongrec.references`), on the
same test examples. Reported: both MRR@5, their difference with a 95% paired bootstrap interval
(2,000 resamples of test examples, seed 0), and the one-sided paired t-test of "the model's reciprocal
rank@5 is higher" over the examples. A model "clearly learned" a task when that p is below 0.05.
The comparison itself is `lifelongrec.floors.item_floor`, which `lifelongrec run` and
`lifelongrec report --floors` print too.

    python bench/beats_popular.py runs/bench/ml100k-quick/seed-0/conure --tasks T1 T2 T3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.floors import item_floor


def compare(run: Path, task: str) -> dict:
    cfg = StreamConfig.model_validate(json.loads((run / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    r = item_floor(run, task, stream)
    return {
        "run": str(run),
        "task": task,
        "examples": r["examples"],
        "model_MRR@5": r["model"],
        "popular_MRR@5": r["reference"],
        "difference": r["difference"],
        "ci95": r["ci95"],
        "p_one_sided": r["p"],
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
