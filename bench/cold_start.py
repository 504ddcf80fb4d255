"""Cold start by bucket (PCL's Fig. 3 question, issue 17): how well does a learned item task rank test
targets that were rare or absent among its training targets?

For each run and item task, every test example's target is ranked exactly as the run ranked it (the
task's network rebuilt from the run's artifacts, full ranking over the catalogue, the run's
exclude_seen), and the examples are grouped by how often their target item is a target in the task's
training split: 0, 1-5, 6-20, > 20. Each bucket reports its example count and MRR@5 / HR@10. The
"all" column is the run's own test MRR@5, recomputed (checked on ML-1M: STL 0.0067 and FineSmax 0.0041,
as their matrix.csv records).

    python bench/cold_start.py runs/bench/ml1m_paper/seed-0/pcl runs/bench/ml1m_paper/seed-0/conure --task T2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.floors import test_ranks
from lifelongrec.metrics import rank_metrics
from lifelongrec.references import training_item_counts

BUCKETS = ((0, 0, "0"), (1, 5, "1-5"), (6, 20, "6-20"), (21, None, "> 20"))


def target_ranks(run: Path, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each test target, its count among the task's training targets), in the run's test order."""
    cfg = StreamConfig.model_validate(json.loads((run / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    ranks, rows = test_ranks(run, task, stream)
    index = next(i for i, t in enumerate(cfg.tasks) if t.name == task)
    train = cfg.train_for(index, task)
    counts = training_item_counts(stream, stream.task(task), train, cfg.input_length(train))
    return ranks, counts[rows[:, 2]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--task", default="T2")
    args = ap.parse_args()
    print(f"| run | {' | '.join(f'{name} (n, MRR@5, HR@10)' for _, _, name in BUCKETS)} | all MRR@5 |")
    print("|---|" + "---|" * (len(BUCKETS) + 1))
    for run in args.runs:
        ranks, counts = target_ranks(run, args.task)
        cells = []
        for lo, hi, _ in BUCKETS:
            m = (counts >= lo) & (counts <= (hi if hi is not None else np.inf))
            if not m.any():
                cells.append("0, -, -")
                continue
            r = rank_metrics(ranks[m], (5, 10))
            cells.append(f"{int(m.sum()):,}, {r['MRR@5']:.4f}, {r['HR@10']:.4f}")
        print(f"| {run} | {' | '.join(cells)} | {rank_metrics(ranks, (5,))['MRR@5']:.4f} |")


if __name__ == "__main__":
    main()
