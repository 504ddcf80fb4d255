"""Mixed precision (train.precision=bf16) and torch.compile (train.compile=true) against plain float32:
T1 pretraining speed and test metrics, every variant run as `lifelongrec pretrain` in a subprocess,
variants interleaved within each seed so that a change in the machine's load hits them alike.

    python bench/precision_compile.py --config ml1m_paper --epochs 3 --seeds 0 --out runs/precision/speed \
        --set train.threads=2
    python bench/precision_compile.py --config ml1m_paper --seeds 0 1 2 --variants fp32 bf16 \
        --out runs/precision/metrics --set train.threads=1     # trained to early stopping

Speed: train tokens/s per epoch from each run's metrics.jsonl; the first epoch of a compiled run
includes compiling, so its later epochs are reported apart. Metrics: the test MRR@5 of the best
epoch. Runs are skipped when their backbone.json is written; results go to <out>/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from lifelongrec.fsutil import write_text_atomic

VARIANTS = {
    "fp32": ["train.precision=fp32", "train.compile=false"],
    "bf16": ["train.precision=bf16", "train.compile=false"],
    "fp32+compile": ["train.precision=fp32", "train.compile=true"],
    "bf16+compile": ["train.precision=bf16", "train.compile=true"],
}


def run(out: Path, config: str, sets: list[str]) -> dict:
    if not (out / "backbone.json").is_file():
        cmd = [sys.executable, "-m", "lifelongrec.cli", "pretrain", "--config", config, "--out", str(out)]
        subprocess.run([*cmd, *[x for s in sets for x in ("--set", s)]], check=True)
    rows = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "backbone.json").read_text())
    return {"epochs": rows, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ml1m_paper")
    ap.add_argument("--epochs", type=int, help="a fixed number of epochs (speed); default: the config's")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    fixed = [f"train.epochs={args.epochs}", f"train.patience={args.epochs}"] if args.epochs else []
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for seed in args.seeds:
        for v in args.variants:
            sets = [*args.overrides, *fixed, f"train.seed={seed}", *VARIANTS[v]]
            r = run(args.out / f"seed-{seed}" / v, args.config, sets)
            tps = [e["tokens_per_s"] for e in r["epochs"]]
            test = r["summary"].get("test", {})
            results[v].append(
                {
                    "seed": seed,
                    "tokens_per_s": tps,
                    "first_epoch_s": r["epochs"][0]["train_seconds"],
                    "later_epoch_s": float(np.median([e["train_seconds"] for e in r["epochs"][1:]]))
                    if len(r["epochs"]) > 1
                    else None,
                    "best_epoch": r["summary"].get("best_epoch"),
                    "test_MRR@5": test.get("MRR@5"),
                    "test_NDCG@10": test.get("NDCG@10"),
                }
            )
    lines = [
        f"# {args.config}: precision and compile ({len(args.seeds)} seed(s))",
        "",
        "| variant | tokens/s, epoch 1 | tokens/s, later epochs (median) | epoch 1 s | later epoch s "
        "| best epoch | test MRR@5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, rs in results.items():
        first = np.mean([r["tokens_per_s"][0] for r in rs])
        later = [x for r in rs for x in r["tokens_per_s"][1:]]
        later_s = [r["later_epoch_s"] for r in rs if r["later_epoch_s"] is not None]
        mrr = [r["test_MRR@5"] for r in rs if r["test_MRR@5"] is not None]
        lines.append(
            f"| {v} | {first:,.0f} | {np.median(later):,.0f} | {np.mean([r['first_epoch_s'] for r in rs]):.1f} | "
            f"{np.median(later_s):.1f} | {', '.join(str(r['best_epoch']) for r in rs)} | "
            f"{np.mean(mrr):.4f} ± {np.std(mrr, ddof=1) if len(mrr) > 1 else 0:.4f} "
            f"({', '.join(f'{m:.4f}' for m in mrr)}) |"
            if later
            else f"| {v} | {first:,.0f} | - | - | - | - | - |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    write_text_atomic(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
