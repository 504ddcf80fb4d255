"""Task-order robustness (Conure, Table 4): Conure learns T2..T6 in three orders, each a branch of
the same Conure T1 (pruned and retrained once from the pretrained T1 artifact), and every task's final
test metric is compared across orders.

    python bench/conure_orders.py --t1 runs/ml1m64/transfer/default-split/T1 [--set train.threads=1] \
        [--orders T1,T2,T3,T4,T5,T6 T1,T4,T5,T6,T2,T3 T1,T6,T5,T4,T3,T2]

Runs are resumable and skipped when complete (rerun the command after a stop); a table of final
metrics per task and order is printed and written to <out>/orders.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _stream import stream_run

from lifelongrec.fsutil import write_text_atomic

ORDERS = ["T1,T2,T3,T4,T5,T6", "T1,T4,T5,T6,T2,T3", "T1,T6,T5,T4,T3,T2"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t1", required=True, type=Path, help="a complete Conure run folder of order T1")
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--orders", nargs="+", default=ORDERS)
    ap.add_argument("--out", type=Path, default=Path("runs/ml1m64/orders"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    finals = {}
    for order in args.orders:
        out = args.out / order.replace(",", "-")
        rows = stream_run(out, args.config, "conure", order, None, args.overrides, args.t1)
        last = rows[-1]["test_after"]
        finals[order] = {r["task"]: last[r["task"]][r["metric"]] for r in rows}
    tasks = sorted({t for f in finals.values() for t in f}, key=lambda t: int(t[1:]))
    lines = ["| order | " + " | ".join(tasks) + " | mean T2..T6 |", "|---" * (len(tasks) + 2) + "|"]
    for i, (order, f) in enumerate(finals.items(), 1):
        later = [f[t] for t in tasks if t != "T1"]
        cells = " | ".join(f"{f[t]:.4f}" for t in tasks)
        lines.append(f"| Order{i} {order} | {cells} | {sum(later) / len(later):.4f} |")
    text = "final test metric of each task (MRR@5 for item tasks, accuracy for profile tasks)\n\n" + "\n".join(lines)
    print(text)
    write_text_atomic(args.out / "orders.md", text + "\n")


if __name__ == "__main__":
    main()
