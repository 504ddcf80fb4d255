"""Test metrics of finished T1 runs with 95% confidence intervals over test users, re-evaluated from
the saved backbone artifact (best weights) on the run's own stream config.

Usage: python bench/t1_ci.py runs/ml1m_loo/sasrec-original [RUN...] [--metrics NDCG@10,HR@10]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lifelongrec.artifacts import load_backbone
from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST
from lifelongrec.objectives import NextItemObjective
from lifelongrec.pretrain import t1_net


def main(argv: list[str]) -> None:
    names = ["NDCG@10", "HR@10"]
    if "--metrics" in argv:
        i = argv.index("--metrics")
        names = argv[i + 1].split(",")
        argv = argv[:i] + argv[i + 2 :]
    torch.set_num_threads(1)
    print("| run | test users | " + " | ".join(f"{m} (95% CI)" for m in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for arg in argv:
        backbone, head, meta = load_backbone(Path(arg))
        cfg = StreamConfig.model_validate(meta["config"])
        stream, _ = open_stream(cfg)
        obj = NextItemObjective(stream, meta["task"], t1_net(backbone, head), cfg)
        obj.module().eval()
        with torch.no_grad():
            t = obj.evaluate(TEST)
        cells = [f"{t[m]:.4f} +/- {t['ci95'][m]:.4f}" for m in names]
        print(f"| {arg} | {t['examples']:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
