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
import torch

from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST
from lifelongrec.metrics import rank_metrics, ranks_full
from lifelongrec.objectives import objective_for
from lifelongrec.predict import Predictor
from lifelongrec.references import training_item_counts

BUCKETS = ((0, 0, "0"), (1, 5, "1-5"), (6, 20, "6-20"), (21, None, "> 20"))


def target_ranks(run: Path, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each test target, its count among the task's training targets), in the run's test order."""
    ranks, _, counts = test_ranks(run, task)
    return ranks, counts


def test_ranks(run: Path, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rank of each test target as the run ranks it, the test examples as (user, end, target) rows
    in the same order, and each target's count among the task's training targets."""
    cfg = StreamConfig.model_validate(json.loads((run / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    p = Predictor(run)
    net, meta = p.model(task), p.config(task)
    train = cfg.train_for(int(meta["index"]), task)
    obj = objective_for(stream, task, net, cfg.model_copy(update={"train": train}))
    es, head = obj.eval_sets[TEST], net.head
    ranks = []
    with torch.no_grad():
        for s in range(0, len(es.windows), 1024):
            sl = slice(s, s + 1024)
            u = obj.user_vectors_dedup(es.windows[sl], es.users[sl], es.ends[sl])
            seen = obj.seen(es.users[sl], es.ends[sl]) if train.exclude_seen else None
            ranks.append(ranks_full(u, head.items, torch.from_numpy(es.targets[sl]), bias=head.bias, exclude=seen))
    counts = training_item_counts(stream, stream.task(task), train, cfg.input_length(train))
    rows = np.stack([es.users, es.ends, es.targets], axis=1).astype(np.int64)
    return torch.cat(ranks).numpy(), rows, counts[es.targets]


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
