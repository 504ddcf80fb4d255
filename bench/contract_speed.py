"""T1 training throughput of two source trees, measured in one run: the method-contract redesign must
not slow the hot loop (issue: no slowdown > 5%).

Each measurement is a fresh subprocess with PYTHONPATH set to one tree: it builds the T1 model of
`--config` for one backbone, runs `--warmup` training steps, then times `--batches` steps (forward,
backward, Adam) and prints tokens/s (supervised positions per second). Trees alternate, round after
round, so drift of a shared machine hits both alike; the table gives the median per tree and backbone
and the ratio new / old.

    git worktree add /tmp/old <commit before the redesign>
    python bench/contract_speed.py --old /tmp/old/src --new src --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import json, sys, time
import numpy as np, torch
from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.engine import make_adam, set_threads
from lifelongrec.objectives import NextItemObjective
from lifelongrec.pretrain import build_t1, t1_net

config, backbone = sys.argv[1], sys.argv[2]
threads, warmup, batches = (int(x) for x in sys.argv[3:6])
cfg = load_config(config, [f"model.name={backbone}", f"train.threads={threads}"])
set_threads(threads)
stream, _ = open_stream(cfg)
net = t1_net(*build_t1(cfg, stream))
obj = NextItemObjective(stream, cfg.tasks[0].name, net, cfg)
opt = make_adam(obj.trainable(), cfg.train)
gen = torch.Generator().manual_seed(0)
obj.module().train()
it = iter(obj.train_batches(np.random.default_rng(0), cfg.train.batch_size))
tokens, t0 = 0, None
for i in range(warmup + batches):
    if i == warmup:
        tokens, t0 = 0, time.perf_counter()
    loss, n = obj.loss(next(it), gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    tokens += int(n)
print(json.dumps({"tokens_per_s": tokens / (time.perf_counter() - t0), "tokens": tokens}))
"""


def measure(tree: str, args, backbone: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    cmd = [sys.executable, "-c", PROBE, args.config, backbone, str(args.threads), str(args.warmup), str(args.batches)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default="src")
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--backbones", nargs="+", default=["nextitnet", "sasrec"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    got: dict[str, dict[str, list[float]]] = {b: {"old": [], "new": []} for b in args.backbones}
    for r in range(args.rounds):
        for b in args.backbones:
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                got[b][side].append(measure(getattr(args, side), args, b))
                print(f"round {r + 1} {b} {side}: {got[b][side][-1]:,.0f} tok/s", flush=True)
    print(f"\n| backbone | old tok/s (median of {args.rounds}) | new tok/s | new / old |")
    print("|---|---|---|---|")
    rows = {}
    for b, v in got.items():
        o, n = statistics.median(v["old"]), statistics.median(v["new"])
        rows[b] = {"old": v["old"], "new": v["new"], "ratio": n / o}
        print(f"| {b} | {o:,.0f} | {n:,.0f} | {n / o:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
