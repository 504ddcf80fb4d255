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
stopped 10 epochs after the best validation accuracy. The feature set `scratch:N` is the
baseline without pretraining: user embeddings learned from scratch with the MLP, as the mean of
trainable item embeddings (d = 64, N(0, 0.1^2)) over the user's last N items (30: what the item tasks'
vectors read in ml1m_paper; 200: what its profile tasks read). Reported per feature
set, over the bench's seeds (each seed's runs, the MLP seeded by it): test accuracy at the best
validation epoch, that epoch, and the seconds of training until it; `--plot` draws validation
accuracy against epochs and against seconds (seed `--seeds[0]`).

    python bench/universal_mlp.py runs/bench/ml1m_paper --task T4 --seeds 0 1 2 \
        --features pcl:T1 pcl:T2+T3 scratch:30 scratch:200 --plot bench/universal_mlp_T4.png
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


SCRATCH_DIM = 64


class ScratchUsers(nn.Module):
    """A user vector learned from scratch: the mean of trainable item embeddings over the user's items."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, SCRATCH_DIM, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.1)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.items(w).sum(1) / (w > 0).sum(1, keepdim=True).clamp(min=1)


def mlp(d_in: int, n_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, n_classes))


def fit_mlp(x: np.ndarray, y: np.ndarray, split: np.ndarray, n_classes: int, seed: int, n_items: int = 0) -> dict:
    """x: [n, d] frozen features, standardised here; or with n_items > 0, [n, L] item windows for
    user embeddings learned from scratch."""
    torch.manual_seed(seed)
    tr = split == TRAIN
    yt = torch.from_numpy(y.astype(np.int64))
    if n_items:
        xt = torch.from_numpy(x)
        model: nn.Module = nn.Sequential(ScratchUsers(n_items), mlp(SCRATCH_DIM, n_classes))
    else:
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
        model = mlp(x.shape[1], n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    idx = {s: torch.from_numpy(np.flatnonzero(split == s)) for s in (TRAIN, VALID, TEST)}
    gen = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, 0.0, 0.0)  # valid accuracy, epoch, test accuracy, seconds until then
    spent, curve, clock = 0.0, [], []

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
        clock.append(round(spent, 3))
        if v > best[0]:
            best = (v, epoch, accuracy(TEST), spent)
        elif epoch - best[1] >= PATIENCE:
            break
    return {
        "valid": best[0],
        "epoch": best[1],
        "test": best[2],
        "seconds": best[3],
        "valid_curve": curve,
        "seconds_curve": clock,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("--task", default="T4")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--features", nargs="+", required=True)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--plot", type=Path, help="draw validation accuracy against epochs and seconds here (PNG)")
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
            if spec.startswith("scratch:"):
                lengths = np.diff(stream.offsets)[td.user]
                x = windows(stream.offsets, stream.seq_items, td.user, lengths, int(spec.split(":")[1]))
                r = fit_mlp(x, td.target, td.split, len(td.classes or []), seed, n_items=stream.n_items)
                r["dim"] = SCRATCH_DIM
            else:
                x = features(args.bench, seed, spec, stream, td.user, args.task)
                r = fit_mlp(x, td.target, td.split, len(td.classes or []), seed)
                r["dim"] = x.shape[1]
            r["majority_test"] = float((td.target[td.split == TEST] == majority).mean())
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
    if args.plot:
        plot(results, args.task, args.seeds[0], args.plot)


def plot(results: dict[str, list[dict]], task: str, seed: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for spec, rs in results.items():
        r = rs[0]
        a.plot(range(1, len(r["valid_curve"]) + 1), r["valid_curve"], label=spec)
        b.plot(r["seconds_curve"], r["valid_curve"], label=spec)
    a.set(xlabel="epoch", ylabel=f"{task} validation accuracy", title=f"MLP on frozen user features (seed {seed})")
    b.set(xlabel="seconds of training")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
