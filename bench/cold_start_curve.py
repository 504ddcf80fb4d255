"""Cold start over epochs (PCL's Fig. 3: "performance w.r.t. the number of training epochs with 50%
cold-start items, lr = 0.01", issue 17): T2 learned after T1 with the training examples of half of
its target items removed (`tasks[1].cold_items: 0.5`; validation and test keep theirs), at lr 1e-2 for
every method, a fixed number of epochs without early stopping, and the validation MRR@5 of every epoch
drawn per method (Conure: its train phase, then its retrain phase, one after the other).

    python bench/cold_start_curve.py --init-from runs/bench/ml1m_paper/seed-0/T1 --config ml1m_paper \
        --methods pcl conure peterrec --epochs 15 --out runs/cold_start_curve --set train.threads=1

Runs are resumable (rerun after a stop); the plot goes to <out>/cold_start_curve.png and the curves
to <out>/curves.json. The test MRR@5 of each run's best validation epoch is printed beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _stream import stream_run

from lifelongrec.fsutil import write_json_atomic


def curve(run: Path, task: str = "T2") -> list[float]:
    """Validation MRR@5 per epoch of the task's training phases, in the order they ran."""
    folder = run / "tasks" / task
    phases = [p for p in ("phase1", "train") if (folder / p / "metrics.jsonl").is_file()]
    out = []
    for p in phases:
        for line in (folder / p / "metrics.jsonl").read_text().splitlines():
            out.append(json.loads(line)["valid"]["MRR@5"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init-from", required=True, type=Path, help="a pretrained T1 artifact folder")
    ap.add_argument("--config", default="ml1m_paper")
    ap.add_argument("--methods", nargs="+", default=["pcl", "conure", "peterrec"])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("runs/cold_start_curve"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    sets = [
        f"tasks[1].cold_items={args.fraction}",
        "finetune.lr=0.01",
        f"finetune.epochs={args.epochs}",
        f"finetune.patience={args.epochs}",
        *args.overrides,
    ]
    curves, tests = {}, {}
    for m in args.methods:
        rows = stream_run(args.out / m, args.config, m, "T1,T2", args.init_from, sets)
        curves[m] = curve(args.out / m)
        tests[m] = rows[-1]["test_after"]["T2"]["MRR@5"]
        print(f"{m}: T2 test MRR@5 {tests[m]:.4f}; valid per epoch {[round(v, 4) for v in curves[m]]}")
    write_json_atomic(args.out / "curves.json", {"curves": curves, "test": tests, "sets": sets})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m, c in curves.items():
        ax.plot(range(1, len(c) + 1), c, marker=".", label=f"{m} (test {tests[m]:.4f})")
    ax.set(xlabel="epoch (Conure: train, then retrain)", ylabel="T2 validation MRR@5")
    ax.set_title(f"T2 with {args.fraction:.0%} of its items cold, lr 1e-2", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "cold_start_curve.png", dpi=110)


if __name__ == "__main__":
    main()
