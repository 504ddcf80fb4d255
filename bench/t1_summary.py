"""Summarise finished pretraining runs for bench/RESULTS.md: reads only the runs' own files.

Usage: python bench/t1_summary.py runs/ml1m/pretrain-sasrec runs/ml1m/pretrain-nextitnet ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(test: dict, name: str) -> str:
    """A test metric, with its 95% interval half-width when the run recorded one (runs since session 5)."""
    ci = test.get("ci95", {}).get(name)
    return f"{test[name]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")


def main() -> None:
    print(
        "| run | backbone | d | protocol | test users | MRR@5 | NDCG@10 | HR@10 | best epoch / run | "
        "s per epoch (train) | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        run = Path(arg)
        meta = json.loads((run / "backbone.json").read_text())
        hist = [json.loads(x) for x in (run / "train" / "metrics.jsonl").read_text().splitlines()]
        secs = sorted(h["train_seconds"] for h in hist)
        tps = sorted(h["tokens_per_s"] for h in hist)
        t = meta["test"]
        print(
            f"| {run} | {meta['model']['name']} | {meta['model']['d']} | {t['protocol']} | {t['examples']:,} | "
            f"{cell(t, 'MRR@5')} | {cell(t, 'NDCG@10')} | {cell(t, 'HR@10')} | {meta['best_epoch']} / "
            f"{meta['epochs_run']} | {secs[len(secs) // 2]:.1f} | {tps[len(tps) // 2]:,.0f} |"
        )


if __name__ == "__main__":
    main()
