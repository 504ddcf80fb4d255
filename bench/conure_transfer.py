"""Positive transfer (Conure, Table 3): is T3 better when Conure learns it after T2 than directly
after T1? Conure first prunes and retrains T1 once, from the pretrained T1 artifact (`<out>/T1`, the
longest step); every seed then branches from that state twice, T1,T2,T3 and T1,T3, with
`train.seed` = seed for the tasks after T1, and the T3 test metrics are compared with a paired t-test
over seeds, both for T3's final model and for Conure- (T3 before its own pruning and retraining,
the version the paper's Table 3 compares). Sharing T1 means the seeds vary the learning of T2 and T3,
the quantities compared. With a single seed the runs are made and printed without a test.
`--split 0.15 0.05 0.8` repeats it with 20% of the users for training (15% train, 5% validation) and
80% for test, Conure's low-data setting.

Runs are resumable and skipped when complete, so the script can be rerun after a stop:
    python bench/conure_transfer.py --init-from runs/ml1m64/pretrain-nextitnet --seeds 0 1 2 3 4 \
        [--split 0.15 0.05 0.8] [--set train.threads=1]
Note: the T1 artifact was trained on the default split; with another split, T1's own row of the
matrix is no longer a clean test, but T3 (whose labels T1 never saw) is the metric compared here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _stream import stream_run

from lifelongrec.fsutil import write_json_atomic
from lifelongrec.significance import paired_t_test


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init-from", required=True, type=Path)
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--split", type=float, nargs=3, default=None, help="train/valid/test fractions")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--metric", default="MRR@5")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    tag = "default-split" if not args.split else "split-" + "-".join(f"{x:g}" for x in args.split)
    root = args.out or Path("runs/ml1m64/transfer") / tag
    sets = list(args.overrides)
    if args.split:
        sets.append("split.fractions=[" + ",".join(str(x) for x in args.split) + "]")
    stream_run(root / "T1", args.config, "conure", "T1", args.init_from, sets)

    def t3(seed: int, order: str) -> tuple[float, float]:
        """T3's test metric after the run, and Conure- (before T3's pruning and retraining)."""
        out = root / f"seed{seed}" / order.replace(",", "-")
        row = stream_run(out, args.config, "conure", order, None, [*sets, f"train.seed={seed}"], root / "T1")[-1]
        return row["test_after"]["T3"][args.metric], row["phase_metrics"]["conure_minus"][args.metric]

    via = [t3(s, "T1,T2,T3") for s in args.seeds]
    direct = [t3(s, "T1,T3") for s in args.seeds]
    result = {"seeds": args.seeds, "metric": args.metric}
    print(f"T3 test {args.metric} ({tag}), seeds {args.seeds}")
    for k, label in ((0, "Conure (final)"), (1, "Conure- (before pruning T3)")):
        a, b = [v[k] for v in via], [v[k] for v in direct]
        print(f"\n{label}\n\n| seed | T3 after T1,T2 | T3 directly after T1 |\n|---|---|---|")
        for s, x, y in zip(args.seeds, a, b):
            print(f"| {s} | {x:.4f} | {y:.4f} |")
        print(f"| mean | {sum(a) / len(a):.4f} | {sum(b) / len(b):.4f} |")
        t = paired_t_test(a, b) if len(a) > 1 else {}
        if t:
            d, tt, df, p = t["mean_difference"], t["t"], t["df"], t["p"]
            print(f"\npaired t-test: mean difference {d:+.4f}, t = {tt:.3f}, df = {df}, p = {p:.4f}")
        result["final" if k == 0 else "conure_minus"] = {"via_T2": a, "direct": b, **t}
    write_json_atomic(root / "summary.json", result)


if __name__ == "__main__":
    main()
