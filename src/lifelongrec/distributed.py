"""Data parallelism under `torchrun` with PyTorch's DistributedDataParallel (gloo on CPU, nccl on GPU).

`torchrun --nproc-per-node N -m lifelongrec pretrain ...` starts N processes; each finds RANK and
WORLD_SIZE in its environment and joins the process group here. One process alone (no torchrun) is a
world of one, and every helper below is then the identity, so the single-process path is unchanged.

How the engine uses it (engine.fit):
- Training: every rank draws the same epoch's batch list (the same seed), pads it by wrapping around to
  a multiple of N, and takes every N-th batch from its rank on (a DistributedSampler over batches:
  `set_epoch` is the epoch seed). The model is wrapped in DDP, which averages the gradients, so a step
  of N processes is one step on N batches. Dropout and sampled negatives draw from a per-rank seed.
- Evaluation: the evaluation set's chunks are dealt to the ranks and the results gathered in chunk
  order, so every example is counted once and the metrics equal one process's to the last bit.
- Files: only rank 0 writes (checkpoints, artifacts, logs); the others wait at a barrier and read.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def setup() -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); nothing otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("LIFELONGREC_DIST_BACKEND") != "gloo" else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def my_share(items: list) -> list:
    """This rank's share of a list every rank holds in the same order: padded by wrapping around to a
    multiple of the world size (so every rank takes as many steps), then every world-th from the rank."""
    n = world()
    if n == 1 or not items:
        return items
    padded = items + items[: (-len(items)) % n]
    return padded[rank() :: n]


def my_chunks(n_chunks: int) -> range:
    """The chunk indices this rank evaluates (dealt round-robin; no padding: each chunk once)."""
    return range(rank(), n_chunks, world())


def gather_chunks(mine: list[Any], n_chunks: int) -> list[Any]:
    """Every rank's results of `my_chunks`, back in chunk order (on every rank)."""
    n = world()
    if n == 1:
        return mine
    parts: list[Any] = [None] * n
    dist.all_gather_object(parts, mine)
    out: list[Any] = [None] * n_chunks
    for r, part in enumerate(parts):
        for i, x in zip(range(r, n_chunks, n), part):
            out[i] = x
    return out


def all_sum(*values: float) -> list[float]:
    """Sums over the ranks (epoch loss and token counts for the log)."""
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def per_rank(value: float) -> list[float]:
    """`value` of every rank, in rank order (the peak memory of each process, for the log)."""
    if world() == 1:
        return [value]
    parts: list[Any] = [None] * world()
    dist.all_gather_object(parts, value)
    return [float(x) for x in parts]
