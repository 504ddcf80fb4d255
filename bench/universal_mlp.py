"""User features for a task no model has seen (PCL's Fig. 4 question, issue 17): how accurate is an MLP
on a profile task, and how fast does it converge, when its only input is a frozen user vector from
a method's run?

A feature set is `METHOD:TASK[+TASK...]`: the user vectors of those tasks in the bench's run of
METHOD (each task's own adapter, input length and pooling, as `lifelongrec predict --embed` gives
them), concatenated. `pcl:T2+T3` is PCL's universal representation over the tasks before the held-out
one; `pcl:T1` is the pretrained backbone alone. Only tasks learned before the held-out task may be
named, so no feature has seen its labels. Every feature set is fitted on the same users and splits
(the held-out task's own 80/5/15 split of the stream): standardised on the training users, then a
two-layer MLP (256 hidden units, ReLU, dropout 0.2, Adam lr 1e-3, batch 64) trained up to 100 epochs,
stopped 10 epochs after the best validation accuracy. Reported per feature set, over the bench's
seeds (each seed's runs, the MLP seeded by it): test accuracy at the best validation epoch, that
epoch, and the seconds of MLP training until it.

    python bench/universal_mlp.py runs/bench/ml1m_paper --task T4 --seeds 0 1 2 \
        --features pcl:T1 pcl:T2+T3 pcl:T2 pcl:T3 conure:T3 stl:T3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lifelongrec.config import StreamConfig
from lifelongrec.data.batches import windows
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST, TRAIN, VALID
from lifelongrec.predict import Predictor
from lifelongrec.tasknet import head_input

HIDDEN, DROPOUT, LR, BATCH, EPOCHS, PATIENCE = 256, 0.2, 1e-3, 64, 100, 10


@torch.no_grad()
def task_vectors(run: Path, task: str, stream, users: np.ndarray) -> np.ndarray:
    """[n, d] the run's user vectors of `task` for these users (their whole input sequence)."""
    p = Predictor(run)
    net, meta = p.model(task), p.config(task)
    lengths = np.diff(stream.offsets)[users]
    w = windows(stream.offsets, stream.seq_items, users, lengths, int(meta["max_length"]))
    out = []
    for s in range(0, len(w), 512):
        batch = {"items": torch.from_numpy(w[s : s + 512])}
        out.append(head_input(net.encoder, batch, meta.get("pooling", "last")).float())
    return torch.cat(out).numpy()


def features(bench: Path, seed: int, spec: str, stream, users: np.ndarray, held_out: str) -> np.ndarray:
    method, tasks = spec.split(":", 1)
    run = bench / f"seed-{seed}" / method
    order = json.loads((run / "run.json").read_text())["order"]
    parts = []
    for t in tasks.split("+"):
        if order.index(t) >= order.index(held_out):
            raise SystemExit(f"{spec}: {t} is learned after {held_out} (or is it): its vectors have seen the labels")
        parts.append(task_vectors(run, t, stream, users))
    return np.concatenate(parts, axis=1)


def fit_mlp(x: np.ndarray, y: np.ndarray, split: np.ndarray, n_classes: int, seed: int) -> dict:
    torch.manual_seed(seed)
    tr = split == TRAIN
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    model = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    idx = {s: torch.from_numpy(np.flatnonzero(split == s)) for s in (TRAIN, VALID, TEST)}
    gen = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, 0.0, 0.0)  # valid accuracy, epoch, test accuracy, seconds until then
    spent, curve = 0.0, []

    def accuracy(s: int) -> float:
        model.eval()
        with torch.no_grad():
            return float((model(xt[idx[s]]).argmax(1) == yt[idx[s]]).float().mean())

    for epoch in range(1, EPOCHS + 1):
        t0 = time.perf_counter()
        model.train()
        order = idx[TRAIN][torch.randperm(len(idx[TRAIN]), generator=gen)]
        for b in range(0, len(order), BATCH):
            rows = order[b : b + BATCH]
            loss = nn.functional.cross_entropy(model(xt[rows]), yt[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        v = accuracy(VALID)
        curve.append(round(v, 4))
        if v > best[0]:
            best = (v, epoch, accuracy(TEST), spent)
        elif epoch - best[1] >= PATIENCE:
            break
    return {"valid": best[0], "epoch": best[1], "test": best[2], "seconds": best[3], "valid_curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("--task", default="T4")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--features", nargs="+", required=True)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict]] = {f: [] for f in args.features}
    for seed in args.seeds:
        any_run = next((args.bench / f"seed-{seed}" / f.split(":")[0]) for f in args.features)
        cfg = StreamConfig.model_validate(json.loads((any_run / "config.json").read_text()))
        stream, _ = open_stream(cfg)
        td = stream.task(args.task)
        majority = np.bincount(td.target[td.split == TRAIN]).argmax()
        for spec in args.features:
            x = features(args.bench, seed, spec, stream, td.user, args.task)
            r = fit_mlp(x, td.target, td.split, len(td.classes or []), seed)
            r["dim"], r["majority_test"] = x.shape[1], float((td.target[td.split == TEST] == majority).mean())
            results[spec].append(r)
            print(
                f"seed {seed} {spec}: dim {r['dim']}, test {r['test']:.4f} at epoch {r['epoch']} ({r['seconds']:.1f} s)"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(f"\n| features ({args.task}) | dim | test accuracy | best epoch | MLP seconds to best |")
    print("|---|---|---|---|---|")
    for spec, rs in results.items():
        acc = np.array([r["test"] for r in rs])
        ep = np.array([r["epoch"] for r in rs])
        sec = np.array([r["seconds"] for r in rs])
        print(
            f"| `{spec}` | {rs[0]['dim']} | {acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.4f} | "
            f"{ep.mean():.1f} | {sec.mean():.1f} |"
        )
    maj = [r["majority_test"] for r in next(iter(results.values()))]
    print(f"| *majority class* | - | {np.mean(maj):.4f} | - | - |")


if __name__ == "__main__":
    main()
