"""T1: self-supervised next-item pretraining of a backbone (Conure, section 3.2, equation 1).

The model is trained with a loss at every position of every training sequence (a causal model sees
all prefixes in one pass: no prefix augmentation), and evaluated by exact full ranking of each held-out
user's next item.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from torch import nn

from . import distributed as dist
from .backbones import Backbone, build_backbone
from .config import StreamConfig
from .data.stream import Stream
from .device import resolve_device
from .engine import fit, resume_key
from .fsutil import clean_stale_temporaries, exclusive_lock
from .heads import ItemHead, next_item_head
from .objectives import NextItemObjective
from .tasknet import SequenceEncoder, TaskNet

logger = logging.getLogger("lifelongrec")


def build_t1(cfg: StreamConfig, stream: Stream) -> tuple[Backbone, ItemHead]:
    torch.manual_seed(cfg.train.seed)
    backbone = build_backbone(cfg.model, stream.n_items).to(resolve_device(cfg.train.device))
    return backbone, next_item_head(backbone, stream.n_items).to(resolve_device(cfg.train.device))


def t1_net(backbone: Backbone, head: ItemHead) -> TaskNet:
    module = nn.ModuleDict({"backbone": backbone, "head": head})
    return TaskNet(SequenceEncoder(backbone), head, module, [p for p in module.parameters() if p.requires_grad])


def pretrain(cfg: StreamConfig, stream: Stream, out: Path, task: str | None = None, log=logger.info) -> dict:
    """Train the first next-item task of the stream and write a backbone artifact to `out`."""
    from .artifacts import save_backbone

    task = task or next(t.name for t in cfg.tasks if t.kind == "next_item")
    backbone, head = build_t1(cfg, stream)
    obj = NextItemObjective(stream, task, t1_net(backbone, head), cfg)
    obj.require_examples()
    n_params = sum(p.numel() for p in obj.trainable())
    log(
        f"pretraining {cfg.model.name} on {cfg.name}/{task}: {n_params:,} parameters, "
        f"{len(obj.train_w):,} training sequences, loss {cfg.train.loss}"
    )
    t0 = time.perf_counter()
    key = resume_key(
        cfg.train,
        task=task,
        model=cfg.model.model_dump(mode="json"),
        vocab_hash=stream.manifest["vocab_hash"],
        sequence=cfg.sequence.model_dump(mode="json", by_alias=True),
    )
    # Under torchrun, rank 0 holds the folder's lock and writes every file; the others train beside it.
    with exclusive_lock(out, "pretrain folder") if dist.is_main() else contextlib.nullcontext():
        if dist.is_main():
            clean_stale_temporaries(out)
        dist.barrier()
        res = fit(obj, cfg.train, out / "train", log=log, key=key)
        meta = {
            "task": task,
            "stream": cfg.name,
            "model": cfg.model.model_dump(mode="json"),
            "n_items": stream.n_items,
            "tied_head": head.tied,
            "vocab_hash": stream.manifest["vocab_hash"],
            "max_length": cfg.sequence.max_length,
            "parameters": n_params,
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "valid": res.best_valid,
            "test": res.test,
            "train_seconds": round(res.train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "config": cfg.model_dump(mode="json", by_alias=True),
        }
        if dist.is_main():
            save_backbone(out, backbone, head, meta)
        dist.barrier()
    return meta
