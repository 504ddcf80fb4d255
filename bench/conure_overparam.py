"""Over-parameterisation (Conure, Figure 3): T1 accuracy after pruning 30/50/70% of the backbone's
weights, without and with retraining, starting from one pretrained T1 artifact.

Each ratio is one `stream run --method conure --order T1 --init-from ARTIFACT` with that pruning
ratio; the run records the unpruned metric (Conure-), the metric right after pruning and the metric
after retraining. Usage:
    python bench/conure_overparam.py --init-from runs/ml1m/pretrain-nextitnet [--ratios 0.3 0.5 0.7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _stream import stream_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init-from", required=True, type=Path)
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--out", type=Path, default=Path("runs/ml1m/overparam"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    rows = []
    for r in args.ratios:
        out = args.out / f"pr{int(r * 100)}"
        sets = ["method.name=conure", f"method.prune=[{r}]", *args.overrides]
        row = stream_run(out, args.config, "conure", "T1", args.init_from, sets)[0]
        metric = row["metric"]
        pm = row["phase_metrics"]
        rows.append(
            (r, pm["conure_minus"][metric], pm["pruned_before_retrain"][metric], row["test_after"][row["task"]][metric])
        )
    print(f"| pruned | unpruned {metric} | pruned, no retraining | pruned + retrain | retrained / unpruned |")
    print("|---|---|---|---|---|")
    for r, full, pruned, retrained in rows:
        print(f"| {r:.0%} | {full:.4f} | {pruned:.4f} | {retrained:.4f} | {retrained / full:.1%} |")


if __name__ == "__main__":
    main()
