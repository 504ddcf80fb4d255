"""How much of a profile label can any head read from a frozen T1 encoder? (issue 16, item 5)

A linear probe: scikit-learn's LogisticRegression (C chosen on the validation split, as
references.bag_of_items_logreg does) fitted to convergence on frozen features of a pretrained T1 model,
for each profile task, at each input window (the user's last N items):

- `state last`: the encoder's state at the last position (the paper's user vector),
- `state mean`: the mean of the states over the real positions (train.pooling=mean),
- `item-embedding mean`: the mean of the input item embeddings (no sequence model at all),
- `bag of items`: the binary user x item matrix of the same window (no pretraining at all).

A method that trains only a head on the frozen encoder (FineSmax) cannot be expected to beat the probe
of its own features: where the probe does not beat the majority class, a linear head finds no label in
the frozen representation. Methods that train part of the encoder (PeterRec, Conure) are not bounded
by it. Each row gives test accuracy
and the one-sided binomial p of "accuracy > the majority share" on the test users.

    python bench/profile_probe.py runs/bench/ml1m_paper/seed-0/T1 --config ml1m_paper --windows 30,200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from lifelongrec.artifacts import load_backbone
from lifelongrec.config import load_config
from lifelongrec.data.batches import trim_left, windows
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST, TRAIN, VALID
from lifelongrec.references import C_GRID, bag_of_items, majority
from lifelongrec.tasknet import pool


def frozen_features(backbone, w: np.ndarray, chunk: int = 64) -> dict[str, np.ndarray]:
    out: dict[str, list[torch.Tensor]] = {"state last": [], "state mean": [], "item-embedding mean": []}
    with torch.no_grad():
        for s in range(0, len(w), chunk):
            x = torch.from_numpy(trim_left(w[s : s + chunk]))
            states = backbone.encode(x)
            out["state last"].append(states[:, -1])
            out["state mean"].append(pool(states, x, "mean"))
            out["item-embedding mean"].append(pool(backbone.item_embedding(x), x, "mean"))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def probe(data: dict[int, tuple]) -> tuple[float, float]:
    """(test accuracy, C) of the logistic regression whose C is best on validation."""
    best = None
    for c in C_GRID:
        with threadpool_limits(limits=1, user_api="blas"):
            model = LogisticRegression(C=c, max_iter=5000, random_state=0).fit(*data[TRAIN])
        v = model.score(*data[VALID])
        if best is None or v > best[0]:
            best = (v, c, model)
    assert best is not None
    return float(best[2].score(*data[TEST])), best[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("backbone", type=Path, help="a `lifelongrec pretrain` artifact")
    ap.add_argument("--config", default="ml1m_paper")
    ap.add_argument("--windows", default="30,200")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, [])
    stream, _ = open_stream(cfg)
    backbone = load_backbone(args.backbone)[0]
    tasks = [t.name for t in cfg.tasks if t.kind == "classify"]
    rows: list[dict] = []
    for n in [int(x) for x in args.windows.split(",")]:
        for task in tasks:
            td = stream.task(task)
            maj = majority(stream, task)["accuracy"]
            feats, labels = {}, {}
            for split in (TRAIN, VALID, TEST):
                m = td.split == split
                w = windows(stream.offsets, stream.seq_items, td.user[m], td.end[m], n)
                bag = bag_of_items(stream, td.user[m], td.end[m], n)
                feats[split] = {**frozen_features(backbone, w), "bag of items": bag}
                labels[split] = td.target[m].astype(np.int64)
            for kind in feats[TRAIN]:
                acc, c = probe({s: (feats[s][kind], labels[s]) for s in feats})
                k = len(labels[TEST])
                p = binomtest(int(round(acc * k)), k, maj, alternative="greater").pvalue
                rows.append(
                    {"window": n, "task": task, "features": kind, "accuracy": acc, "C": c, "p": p, "majority": maj}
                )
                print(f"window {n:>4} {task} {kind:<20} test {acc:.4f}  majority {maj:.4f}  p {p:.2g}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print("\n| window | features | " + " | ".join(tasks) + " |")
    print("|---|---|" + "---|" * len(tasks))
    for n in sorted({r["window"] for r in rows}):
        for kind in dict.fromkeys(r["features"] for r in rows):
            cells = [
                next(r for r in rows if r["window"] == n and r["features"] == kind and r["task"] == t) for t in tasks
            ]
            print(f"| {n} | {kind} | " + " | ".join(f"{r['accuracy']:.4f} (p={r['p']:.2g})" for r in cells) + " |")
    print("| | *majority* | " + " | ".join(f"{majority(stream, t)['accuracy']:.4f}" for t in tasks) + " |")


if __name__ == "__main__":
    main()
