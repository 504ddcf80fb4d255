"""Task-order robustness (Conure's Table 4, PCL's Fig. 2): a method learns T2..T6 in three orders, from
each bench seed's pretrained T1, and every task's final test metric is compared across orders, as the
mean and spread over seeds.

    python bench/task_orders.py --method pcl --bench runs/bench/ml1m_paper --config ml1m_paper \
        --seeds 0 1 2 --set train.threads=1 [--orders T1,T2,T3,T4,T5,T6 T1,T4,T5,T6,T2,T3 T1,T6,T5,T4,T3,T2]

Order 1 is the bench's own run of the method (<bench>/seed-S/<method>, learned in T1..T6 order) when it
is complete; other orders are learned into <out>/seed-S/<order>. Conure's other orders branch from the
bench run after its T1 (pruned and retrained once, so every order starts from the same T1); other
methods start from the bench's pretrained T1 (<bench>/seed-S/T1). Each seed runs with train.seed = S,
as the bench does. Runs are resumable and skipped when complete (rerun the command after a stop); a
table per task and order is printed and written to <out>/orders.md.

The single-seed form used for Conure on `ml1m` (RESULTS, "Task-order robustness"):
    python bench/task_orders.py --method conure --t1 runs/ml1m64/transfer/default-split/T1 --set train.threads=1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _stream import stream_run

from lifelongrec.fsutil import write_text_atomic

ORDERS = ["T1,T2,T3,T4,T5,T6", "T1,T4,T5,T6,T2,T3", "T1,T6,T5,T4,T3,T2"]


def finals(rows: list[dict]) -> dict[str, float]:
    last = rows[-1]["test_after"]
    return {r["task"]: last[r["task"]][r["metric"]] for r in rows}


def bench_rows(run: Path, order: str) -> list[dict] | None:
    """The bench run's rows when it is complete and learned this order."""
    meta = run / "run.json"
    if not meta.is_file():
        return None
    held = json.loads(meta.read_text())
    if held.get("status") != "complete" or ",".join(held.get("order", [])) != order:
        return None
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="conure")
    ap.add_argument("--bench", type=Path, help="a bench folder: seed-S/T1 and seed-S/<method> per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--t1", type=Path, help="without --bench: one Conure run folder of order T1 to branch from")
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--orders", nargs="+", default=ORDERS)
    ap.add_argument("--out", type=Path, help="default: <bench>/orders-<method>, or runs/ml1m64/orders")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    if (args.bench is None) == (args.t1 is None):
        raise SystemExit("give --bench (with --seeds) or --t1")
    out = args.out or (args.bench / f"orders-{args.method}" if args.bench else Path("runs/ml1m64/orders"))
    result: dict[str, list[dict[str, float]]] = {o: [] for o in args.orders}
    for seed in args.seeds:
        sets = [*args.overrides, f"train.seed={seed}"] if args.bench else args.overrides
        for order in args.orders:
            rows = bench_rows(args.bench / f"seed-{seed}" / args.method, order) if args.bench else None
            if rows is None:
                run = out / f"seed-{seed}" / order.replace(",", "-") if args.bench else out / order.replace(",", "-")
                if args.bench is None:
                    init, branch = None, args.t1
                elif args.method == "conure":
                    init, branch = None, args.bench / f"seed-{seed}" / "conure"
                else:
                    init, branch = args.bench / f"seed-{seed}" / "T1", None
                rows = stream_run(run, args.config, args.method, order, init, sets, branch)
            result[order].append(finals(rows))
    tasks = sorted({t for fs in result.values() for f in fs for t in f}, key=lambda t: int(t[1:]))
    lines = ["| order | " + " | ".join(tasks) + " | mean T2..T6 |", "|---" * (len(tasks) + 2) + "|"]
    for i, (order, fs) in enumerate(result.items(), 1):
        cells = []
        for t in [*tasks, "mean"]:
            v = np.array([np.mean([f[x] for x in tasks if x != "T1"]) if t == "mean" else f[t] for f in fs])
            cells.append(f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else ""))
        lines.append(f"| Order{i} {order} | {' | '.join(cells)} |")
    text = (
        f"{args.method}: final test metric of each task (MRR@5 for item tasks, accuracy for profile tasks)"
        + (f", mean ± std over seeds {args.seeds}" if len(args.seeds) > 1 else "")
        + "\n\n"
        + "\n".join(lines)
    )
    print(text)
    write_text_atomic(out / "orders.md", text + "\n")


if __name__ == "__main__":
    main()
