"""Summarise bench/side_by_side.sh: wall-clock seconds until each implementation first reaches
RecBole's best validation NDCG@10, and training tokens/s. Reads only the runs' logs.

Time counts training and validation from the first step (RecBole's data preparation and our data
loading are reported apart). "Best" for RecBole is the best within its epoch budget, said so below.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WORK = Path(__file__).parent / "_work"


def recbole(name: str) -> dict:
    rows = [json.loads(x) for x in (WORK / f"recbole-{name}.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    best = max(r["valid"]["ndcg@10"] for r in epochs)
    first = next(r for r in epochs if r["valid"]["ndcg@10"] >= best)
    start = rows[0]
    return {
        "best": best,
        "epochs": len(epochs),
        "seconds_to_best": first["elapsed_seconds"],
        "train_seconds_per_epoch": sum(r["train_seconds"] for r in epochs) / len(epochs),
        # RecBole trains on every prefix of every sequence: one supervised target per sample, and each
        # sample is a padded window of MAX_ITEM_LIST_LENGTH = 50 positions that the encoder reads.
        "targets_per_s": start["train_samples"] * len(epochs) / sum(r["train_seconds"] for r in epochs),
        "samples": start["train_samples"],
        "prep_seconds": start["prep_seconds"],
    }


def ours(name: str, target: float, tag: str = "") -> dict:
    hist = [json.loads(x) for x in (WORK / f"ours-{name}{tag}" / "train" / "metrics.jsonl").read_text().splitlines()]
    elapsed, reached = 0.0, None
    for h in hist:
        elapsed += h["train_seconds"] + h["eval_seconds"]
        if reached is None and h["valid"]["NDCG@10"] >= target:
            reached = elapsed
    return {
        "seconds_to_target": reached,
        "best": max(h["valid"]["NDCG@10"] for h in hist),
        "tokens_per_s": sorted(h["tokens_per_s"] for h in hist)[len(hist) // 2],
        "epochs": len(hist),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="", help="compare the variant of ours run with OURS_TAG=<tag>")
    args = ap.parse_args()
    print(
        "| model | RecBole best valid NDCG@10 (epochs) | RecBole s to it | lifelongrec s to it | speed-up | "
        "lifelongrec best | RecBole targets/s | lifelongrec targets/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("sasrec", "nextitnet"):
        try:
            rb = recbole(name)
        except FileNotFoundError:
            continue
        try:
            us = ours(name, rb["best"], args.tag)
        except FileNotFoundError:
            continue
        sp = f"{rb['seconds_to_best'] / us['seconds_to_target']:.1f}x" if us["seconds_to_target"] else "not reached"
        ours_s = f"{us['seconds_to_target']:.0f}" if us["seconds_to_target"] else "-"
        print(
            f"| {name} | {rb['best']:.4f} ({rb['epochs']}) | {rb['seconds_to_best']:.0f} | {ours_s} | {sp} | "
            f"{us['best']:.4f} | {rb['targets_per_s']:,.0f} | {us['tokens_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
