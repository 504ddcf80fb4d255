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
        [--split 0.15 0.05 0.8] [--set train.threads=1] [--keep bench/FILE.json] [--no-learn]
`--keep FILE` keeps every finished seed's four T3 numbers in FILE (written after each seed), with the
sha256 of the pretrained T1 and the settings, so a later session whose run folders are gone reports
them without learning them again; values kept from another T1 or other settings are refused.
`--no-learn` learns nothing: it reports the seeds that are finished or kept and names the others.
Note: the T1 artifact was trained on the default split; with another split, T1's own row of the
matrix is no longer a clean test, but T3 (whose labels T1 never saw) is the metric compared here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from _stream import complete, stream_run

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
    ap.add_argument("--keep", type=Path, default=None, help="per-seed values kept across sessions (JSON)")
    ap.add_argument("--no-learn", action="store_true", help="report finished and kept seeds only")
    args = ap.parse_args()
    tag = "default-split" if not args.split else "split-" + "-".join(f"{x:g}" for x in args.split)
    root = args.out or Path("runs/ml1m64/transfer") / tag
    sets = list(args.overrides)
    if args.split:
        sets.append("split.fractions=[" + ",".join(str(x) for x in args.split) + "]")
    identity = {
        "t1_sha256": hashlib.sha256((args.init_from / "backbone.safetensors").read_bytes()).hexdigest(),
        "config": args.config,
        "sets": sets,
        "metric": args.metric,
    }
    kept = read_kept(args.keep, identity)
    if not args.no_learn:  # Conure's pruned and retrained T1, which every seed branches from
        stream_run(root / "T1", args.config, "conure", "T1", args.init_from, sets)

    def t3(seed: int, order: str) -> tuple[float, float] | None:
        """T3's test metric after the run, and Conure- (before T3's pruning and retraining); None when the
        run is not finished and --no-learn holds."""
        out = root / f"seed{seed}" / order.replace(",", "-")
        if args.no_learn and not complete(out):
            return None
        row = stream_run(out, args.config, "conure", order, None, [*sets, f"train.seed={seed}"], root / "T1")[-1]
        return row["test_after"]["T3"][args.metric], row["phase_metrics"]["conure_minus"][args.metric]

    done: dict[int, dict] = {}
    for s in args.seeds:
        finished = all(complete(root / f"seed{s}" / o) for o in ("T1-T2-T3", "T1-T3"))
        if str(s) in kept["seeds"] and not finished:
            done[s] = kept["seeds"][str(s)]
            continue
        via, direct = t3(s, "T1,T2,T3"), t3(s, "T1,T3")
        if via is None or direct is None:
            print(f"seed {s}: not finished and not kept (left out)")
            continue
        done[s] = {"via_T2": list(via), "direct": list(direct)}
        if args.keep:
            kept["seeds"][str(s)] = done[s]
            write_json_atomic(args.keep, kept)
    seeds = sorted(done)
    result = {"seeds": seeds, "metric": args.metric, **{k: v for k, v in identity.items() if k != "metric"}}
    print(f"T3 test {args.metric} ({tag}), seeds {seeds}")
    for k, label in ((0, "Conure (final)"), (1, "Conure- (before pruning T3)")):
        a, b = [done[s]["via_T2"][k] for s in seeds], [done[s]["direct"][k] for s in seeds]
        print(f"\n{label}\n\n| seed | T3 after T1,T2 | T3 directly after T1 |\n|---|---|---|")
        for s, x, y in zip(seeds, a, b):
            print(f"| {s} | {x:.4f} | {y:.4f} |")
        if a:
            print(f"| mean | {sum(a) / len(a):.4f} | {sum(b) / len(b):.4f} |")
        t = paired_t_test(a, b) if len(a) > 1 else {}
        if t:
            d, tt, df, p = t["mean_difference"], t["t"], t["df"], t["p"]
            wins = sum(x > y for x, y in zip(a, b))
            print(f"\npaired t-test: mean difference {d:+.4f}, t = {tt:.3f}, df = {df}, p = {p:.4f}", end="")
            print(f"; higher after T2 in {wins} of {len(a)}")
        result["final" if k == 0 else "conure_minus"] = {"via_T2": a, "direct": b, **t}
    write_json_atomic(root / "summary.json", result)


def read_kept(path: Path | None, identity: dict) -> dict:
    """The kept per-seed values, refused when they come from another T1 or other settings."""
    if path is None or not path.is_file():
        return {**identity, "seeds": {}}
    kept = json.loads(path.read_text())
    for key, want in identity.items():
        if kept.get(key) != want:
            sys.exit(
                f"error: {path}: kept values were made with {key} = {kept.get(key)!r}, this call has {want!r}; "
                "use another --keep file, or delete this one to learn every seed again"
            )
    return kept


if __name__ == "__main__":
    main()
