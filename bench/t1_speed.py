"""T1 training throughput against this machine's own float32 matmul peak, measured in one run.

For each backbone: FLOPs per training epoch counted exactly with torch's FlopCounterMode (forward +
backward of every batch, the optimizer excluded), then epochs timed; achieved GFLOP/s divided by the
best square-GEMM GFLOP/s measured in the same process gives the fraction of peak.
Ablations (each undoes one speed fix, to measure what it gains):
  --no-trim     keep every batch at the full window width instead of dropping all-padding columns
  --conv1d      NextItNet convolutions through F.conv1d instead of one GEMM over concatenated taps
  --threads N   torch threads (default: all cores)
On a GPU (train.device auto finds it, or --set train.device=cuda) the peak is the GPU's own GEMM peak in
the training dtype (--set train.precision=bf16: bfloat16 GEMMs under autocast), timed with synchronisation.
Usage: python bench/t1_speed.py [--config ml1m] [--epochs 2] [--set model.d=256 ...] [ablations]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.device import generator, resolve_device
from lifelongrec.engine import make_adam, set_threads
from lifelongrec.objectives import NextItemObjective
from lifelongrec.pretrain import build_t1, t1_net


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 10) -> float:
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def epoch_flops(obj: NextItemObjective, batch_size: int) -> float:
    total = 0
    gen = generator(obj.device, 0)
    for batch in obj.train_batches(np.random.default_rng(0), batch_size):
        with FlopCounterMode(display=False) as fc:
            loss, _ = obj.loss(batch, gen)
            loss.backward()
        total += fc.get_total_flops()
    obj.module().zero_grad(set_to_none=True)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--backbones", nargs="+", default=["nextitnet", "sasrec"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--no-trim", action="store_true")
    ap.add_argument("--conv1d", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = set_threads(args.threads)
    if args.no_trim:
        import lifelongrec.objectives as objectives

        objectives.trim_left = lambda batch: batch
    if args.conv1d:
        import torch.nn.functional as F

        from lifelongrec.backbones.nextitnet import CausalConv1d

        def conv1d_forward(self, x, view):
            w = view.weight(self)
            y = F.conv1d(F.pad(x.transpose(1, 2), (self.left, 0)), w, self.bias, dilation=self.dilation)
            return y.transpose(1, 2)

        CausalConv1d.forward = conv1d_forward
    for name in args.backbones:
        cfg = load_config(args.config, [f"model.name={name}", *args.overrides])
        device = resolve_device(cfg.train.device)
        bf16 = cfg.train.precision == "bf16"
        peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        stream, _ = open_stream(cfg)
        backbone, head = build_t1(cfg, stream)
        obj = NextItemObjective(stream, "T1", t1_net(backbone, head), cfg)
        obj.module().to(device)
        with autocast:
            flops = epoch_flops(obj, cfg.train.batch_size)
        opt = make_adam(obj.trainable(), cfg.train)
        times, tokens = [], 0
        for epoch in range(args.epochs):
            rng = np.random.default_rng(epoch)
            gen = generator(device, epoch)
            obj.module().train()
            sync(device)
            t0, tokens = time.perf_counter(), 0
            for batch in obj.train_batches(rng, cfg.train.batch_size):
                with autocast:
                    loss, n = obj.loss(batch, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tokens += int(n)
            sync(device)
            times.append(time.perf_counter() - t0)
        t = min(times)
        print(
            json.dumps(
                {
                    "backbone": name,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "precision": cfg.train.precision,
                    "d": cfg.model.d,
                    "threads": threads,
                    "batch_size": cfg.train.batch_size,
                    "loss": cfg.train.loss,
                    "epoch_seconds": [round(x, 2) for x in times],
                    "tokens_per_epoch": tokens,
                    "tokens_per_s": round(tokens / t),
                    "gflop_per_epoch": round(flops / 1e9, 1),
                    "achieved_gflops": round(flops / t / 1e9, 1),
                    "matmul_peak_gflops": round(peak, 1),
                    "fraction_of_peak": round(flops / t / 1e9 / peak, 3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
