"""Task-order robustness (Conure's Table 4, PCL's Fig. 2): a method learns T2..T6 in three orders, from
each bench seed's pretrained T1, and every task's final test metric is compared across orders, as the
mean and spread over seeds.

    python bench/task_orders.py --method pcl --bench runs/bench/ml1m_paper --config ml1m_paper \
        --seeds 0 1 2 --set train.threads=1 [--orders T1,T2,T3,T4,T5,T6 T1,T4,T5,T6,T2,T3 T1,T6,T5,T4,T3,T2]

Order 1 is the bench's own run of the method (<bench>/seed-S/<method>, learned in T1..T6 order) when it
is complete; other orders are learned into <out>/seed-S/<order>. Conure's orders branch from a Conure
run of T1 alone (<out>/seed-S/T1: the pretrained T1 pruned and retrained once, so every order starts
from the same T1); other methods start from the bench's pretrained T1 (<bench>/seed-S/T1). Each seed
runs with train.seed = S, as the bench does. Runs are resumable and skipped when complete (rerun the
command after a stop); a table per task and order (mean ± std [min, max] over seeds, and a paired
t-test of each order against Order1) is printed and written to <out>/orders.md, the per-seed values to
<out>/orders.json. When the bench has no run of the method, Order 1 is learned into <out> too.
`--plot FIG.png --beside OTHER/orders.json` draws Fig. 2 with another method's orders next to this
one's. `--reuse bench/task_orders_<method>.json ...` (the per-seed values behind RESULTS, kept in the
repository) takes the (seed, order) results held there instead of learning them again, e.g. to add a
seed after the run folders are gone; several files (one per seed, learned by separate processes)
merge, a later file replacing a seed whole. Each orders.json keeps the sha256 of every seed's T1, and
kept results whose T1 differs from the one in the bench folder are refused (`--relearn-other-t1`:
learned again). `--report-only` learns nothing. `--branch-only` (Conure) learns each seed's branch
point and stops, so that the orders can then run side by side as separate processes (`--orders O`).

The single-seed form used for Conure on `ml1m` (RESULTS, "Task-order robustness"):
    python bench/task_orders.py --method conure --t1 runs/ml1m64/transfer/default-split/T1 --set train.threads=1
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from _stream import stream_run
from scipy import stats

from lifelongrec.fsutil import write_json_atomic, write_text_atomic

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


def conure_branch_point(args: argparse.Namespace, out: Path, seed: int, sets: list[str]) -> Path:
    """A Conure run of T1 alone (the pretrained T1 pruned and retrained once) that every order of this
    seed branches from, so all orders start from the same T1. A branch needs a run whose learned tasks
    are a proper prefix of the new order: a finished six-task run is not one."""
    run = out / f"seed-{seed}" / "T1"
    stream_run(run, args.config, "conure", "T1", args.bench / f"seed-{seed}" / "T1", sets)
    return run


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
    ap.add_argument("--plot", type=Path, help="draw Fig. 2 here (PNG), with the methods of --beside next to this one")
    ap.add_argument("--beside", type=Path, nargs="*", default=[], help="orders.json of other methods for --plot")
    ap.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=[],
        help="an orders.json of an earlier call (e.g. the one kept in bench/): its (seed, order) results are taken "
        "as they are instead of learning them again; the rest is learned",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="learn nothing: report the seeds whose every order is complete or kept, leave the others out",
    )
    ap.add_argument(
        "--branch-only",
        action="store_true",
        help="Conure: learn each seed's T1 branch point and stop, so that its orders can then run as separate "
        "processes side by side (they would otherwise all learn the same branch point at once)",
    )
    ap.add_argument(
        "--relearn-other-t1",
        action="store_true",
        help="kept results of a seed whose T1 differs from the bench's are learned again instead of refused",
    )
    args = ap.parse_args()
    if (args.bench is None) == (args.t1 is None):
        raise SystemExit("give --bench (with --seeds) or --t1")
    out = args.out or (args.bench / f"orders-{args.method}" if args.bench else Path("runs/ml1m64/orders"))
    if args.branch_only:
        if args.method != "conure" or args.bench is None:
            raise SystemExit("--branch-only is for --method conure with --bench: other methods start from T1 itself")
        for seed in args.seeds:
            print(f"seed {seed}: branch point {conure_branch_point(args, out, seed, seed_sets(args, seed))}")
        return
    result: dict[str, list[dict[str, float]]] = {o: [] for o in args.orders}
    kept, kept_t1 = kept_results(args.reuse, args.method)
    t1_hashes: dict[str, str] = {}
    seeds = []
    for seed in args.seeds:
        kept_digest = kept_t1.get(str(seed))
        t1_hashes[str(seed)] = t1_identity(args, seed, kept_digest, relearn=args.relearn_other_t1)
        if kept_digest and t1_hashes[str(seed)] != kept_digest:  # --relearn-other-t1 said so
            kept = {k: v for k, v in kept.items() if k[0] != seed}
        held = seed_finals(args, out, seed, kept)
        if held is None:
            print(f"seed {seed}: not every order is complete or kept; left out of the report (--report-only)")
            del t1_hashes[str(seed)]
            continue
        seeds.append(seed)
        for order in args.orders:
            result[order].append(held[order])
    write_json_atomic(
        out / "orders.json", {"method": args.method, "seeds": seeds, "t1_sha256": t1_hashes, "finals": result}
    )
    text = table(args.method, seeds, result)
    print(text)
    write_text_atomic(out / "orders.md", text + "\n")
    if args.plot:
        plot([out / "orders.json", *args.beside], args.plot)


def seed_sets(args: argparse.Namespace, seed: int) -> list[str]:
    """A bench seed runs with train.seed = S, as the bench does."""
    return [*args.overrides, f"train.seed={seed}"] if args.bench else args.overrides


def seed_finals(
    args: argparse.Namespace, out: Path, seed: int, kept: dict[tuple[int, str], dict[str, float]]
) -> dict[str, dict[str, float]] | None:
    """Every order's finals for one seed: kept (--reuse), from a complete run, or learned now; with
    --report-only nothing is learned and a seed with any order missing gives None."""
    sets = seed_sets(args, seed)
    held = {}
    for order in args.orders:
        if (seed, order) in kept:
            held[order] = kept[seed, order]
            continue
        run = out / f"seed-{seed}" / order.replace(",", "-") if args.bench else out / order.replace(",", "-")
        rows = bench_rows(args.bench / f"seed-{seed}" / args.method, order) if args.bench else None
        rows = rows or bench_rows(run, order)
        if rows is None and args.report_only:
            return None
        if rows is None:
            if args.bench is None:
                init, branch = None, args.t1
            elif args.method == "conure":
                init, branch = None, conure_branch_point(args, out, seed, sets)
            else:
                init, branch = args.bench / f"seed-{seed}" / "T1", None
            rows = stream_run(run, args.config, args.method, order, init, sets, branch)
        held[order] = finals(rows)
    return held


def kept_results(paths: list[Path], method: str) -> tuple[dict[tuple[int, str], dict[str, float]], dict[str, str]]:
    """The (seed, order) finals and per-seed T1 hashes of several --reuse files (e.g. the values kept in
    bench/ and one file per seed learned since). A seed found in a later file is taken from that file
    alone, so one seed's orders never mix two T1 models."""
    kept: dict[tuple[int, str], dict[str, float]] = {}
    kept_t1: dict[str, str] = {}
    for path in paths:
        finals, hashes = reused(path, method)
        for seed in {s for s, _ in finals}:
            if any(s == seed for s, _ in kept):
                print(f"--reuse: seed {seed} is taken from {path}, the later file")
                kept = {k: v for k, v in kept.items() if k[0] != seed}
                kept_t1.pop(str(seed), None)
        kept.update(finals)
        kept_t1.update(hashes)
    return kept, kept_t1


def reused(path: Path, method: str) -> tuple[dict[tuple[int, str], dict[str, float]], dict[str, str]]:
    held = json.loads(path.read_text())
    if held.get("method") != method:
        raise SystemExit(f"{path} holds the orders of {held.get('method')!r}, not {method!r}")
    finals = {(s, o): fs[i] for o, fs in held["finals"].items() for i, s in enumerate(held["seeds"]) if i < len(fs)}
    return finals, held.get("t1_sha256", {})


def t1_weights(args: argparse.Namespace, seed: int) -> Path:
    return (args.bench / f"seed-{seed}" / "T1" if args.bench else args.t1) / "backbone.safetensors"


def t1_identity(args: argparse.Namespace, seed: int, kept: str | None, relearn: bool = False) -> str:
    """The sha256 of the seed's pretrained T1 weights, which every order of the seed starts from. A T1
    pretrained again (a new session, another machine kind: the rounding differs) need not be the same
    model, so results kept from another T1 are refused rather than mixed with new ones; with `relearn`
    the T1 here is returned instead, and the caller learns the seed again."""
    weights = t1_weights(args, seed)
    here = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None
    if kept and here and kept != here:
        if relearn:
            print(f"seed {seed}: the kept results come from another T1; they are learned again from this one")
            return here
        raise SystemExit(
            f"seed {seed}: the results kept in --reuse were learned from a T1 with sha256 {kept[:12]}..., "
            f"but {weights} has {here[:12]}...: pretrain that T1 again on the machine kind that made it, "
            "or learn every order of this seed again (leave the seed out of --reuse)"
        )
    return here or kept or "unknown"


def table(method: str, seeds: list[int], result: dict[str, list[dict[str, float]]]) -> str:
    """Per task and order: mean ± std over seeds, [min, max], and for Orders 2+ a two-sided paired t-test
    against Order1 over the seeds (the seed fixes T1, so the orders of one seed are paired)."""
    tasks = sorted({t for fs in result.values() for f in fs for t in f}, key=lambda t: int(t[1:]))
    # No mean over tasks: it would mix MRR@5 of item tasks with accuracy of profile tasks.
    lines = ["| order | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    first = next(iter(result.values()))
    for i, (order, fs) in enumerate(result.items(), 1):
        cells = []
        for t in tasks:
            v, base = (np.array([f[t] for f in x]) for x in (fs, first))
            cell = f"{v.mean():.4f}"
            if len(v) > 1:
                cell += f" ± {v.std(ddof=1):.4f} [{v.min():.4f}, {v.max():.4f}]"
            if i > 1 and len(v) > 1 and len(v) == len(base) and not np.array_equal(v, base):
                cell += f" (p={stats.ttest_rel(v, base).pvalue:.2g})"
            cells.append(cell)
        lines.append(f"| Order{i} {order} | {' | '.join(cells)} |")
    return (
        f"{method}: final test metric of each task (MRR@5 for item tasks, accuracy for profile tasks)"
        + (f", mean ± std [min, max] over seeds {seeds}; p: paired t-test against Order1" if len(seeds) > 1 else "")
        + "\n\n"
        + "\n".join(lines)
    )


def plot(sources: list[Path], out: Path) -> None:
    """Fig. 2's layout: one panel per task after T1, per order and method the mean over seeds (a point,
    with the range of the seeds) and the seeds as dots, methods side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = [json.loads(p.read_text()) for p in sources]
    orders = list(held[0]["finals"])
    tasks = [t for t in held[0]["finals"][orders[0]][0] if t != "T1"]
    tasks.sort(key=lambda t: int(t[1:]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3 * len(tasks), 3.2))
    width = 0.8 / len(held)
    for ax, task in zip(np.atleast_1d(axes), tasks, strict=True):
        for m, h in enumerate(held):
            for o, order in enumerate(orders):
                v = [f[task] for f in h["finals"].get(order, [])]
                if not v:
                    continue
                x = o + (m - (len(held) - 1) / 2) * width
                # Points, not bars: the axis is zoomed to the values, and a bar cut off above zero
                # would draw a difference of 0.0007 MRR@5 as a bar twice as tall.
                mean = float(np.mean(v))
                spread = [[mean - min(v)], [max(v) - mean]]
                label = f"{h['method']} ({len(v)} seeds)" if o == 0 else None
                ax.errorbar(x, mean, yerr=spread, fmt="o", color=f"C{m}", capsize=3, label=label)
                ax.plot([x] * len(v), v, "k.", ms=3)
        ax.set_xticks(range(len(orders)), [f"Order{i}" for i in range(1, len(orders) + 1)])
        ax.set_title(task)
        lo = min(f[task] for h in held for fs in h["finals"].values() for f in fs)
        hi = max(f[task] for h in held for fs in h["finals"].values() for f in fs)
        ax.set_ylim(lo - 0.15 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(
        "final test metric per task and order (points: mean over seeds, bars: min-max; dots: seeds)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
