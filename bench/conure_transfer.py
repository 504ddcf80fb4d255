"""Positive transfer (Conure, Table 3): is T3 better when Conure learns it after T2 than directly
after T1? Conure first prunes and retrains T1 once, from the pretrained T1 artifact (`<out>/T1`, the
longest step); every seed then branches from that state twice, T1,T2,T3 and T1,T3, with
`train.seed` = seed for the tasks after T1, and the T3 test metrics are compared with a paired t-test
over seeds. Sharing T1 means the seeds vary the learning of T2 and T3, the quantities compared.
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
import json
from pathlib import Path

from _stream import stream_run

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

    def t3(seed: int, order: str) -> float:
        out = root / f"seed{seed}" / order.replace(",", "-")
        rows = stream_run(out, args.config, "conure", order, None, [*sets, f"train.seed={seed}"], root / "T1")
        return rows[-1]["test_after"]["T3"][args.metric]

    via, direct = [], []
    for s in args.seeds:
        via.append(t3(s, "T1,T2,T3"))
        direct.append(t3(s, "T1,T3"))
    t = paired_t_test(via, direct)
    print(f"T3 test {args.metric} ({tag}), seeds {args.seeds}")
    print("| seed | T3 after T1,T2 | T3 directly after T1 |")
    print("|---|---|---|")
    for s, a, b in zip(args.seeds, via, direct):
        print(f"| {s} | {a:.4f} | {b:.4f} |")
    print(f"| mean | {sum(via) / len(via):.4f} | {sum(direct) / len(direct):.4f} |")
    print(f"paired t-test: mean difference {t['mean_difference']:+.4f}, t = {t['t']:.3f}, df = {t['df']}, ", end="")
    print(f"p = {t['p']:.4f}")
    (root / "summary.json").write_text(json.dumps({"seeds": args.seeds, "via_T2": via, "direct": direct, **t}))


if __name__ == "__main__":
    main()
