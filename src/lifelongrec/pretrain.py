"""T1: self-supervised next-item pretraining of a backbone (Conure, section 3.2, equation 1).

The model is trained with a loss at every position of every training sequence (a causal model sees
all prefixes in one pass: no prefix augmentation), and evaluated by exact full ranking of each held-out
user's next item.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbones import build_backbone
from .config import StreamConfig
from .data.batches import sort_by_length, trim_left, windows
from .data.stream import TEST, TRAIN, VALID, Stream
from .engine import Objective, fit
from .heads import ItemHead
from .metrics import rank_metrics, ranks_full, ranks_sampled


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 64) -> list:
    """Random batches of similar lengths: shuffle, sort within groups of `bucket` batches, shuffle batches.
    Similar lengths let each batch drop its all-padding columns."""
    perm = rng.permutation(len(lengths))
    out = []
    step = batch_size * bucket
    for s in range(0, len(perm), step):
        group = perm[s : s + step]
        group = group[np.argsort(lengths[group], kind="stable")]
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


class NextItemObjective(Objective):
    def __init__(self, stream: Stream, task: str, backbone: nn.Module, head: ItemHead, cfg: StreamConfig) -> None:
        self.backbone, self.head, self.cfg = backbone, head, cfg
        self.monitor = cfg.train.monitor
        td = stream.task(task)
        L = cfg.sequence.max_length
        tr = td.split == TRAIN
        w = windows(stream.offsets, stream.seq_items, td.user[tr], td.end[tr], L + 1)
        self.train_w = w[(w > 0).sum(1) >= 2]  # a row needs an input and a target
        self.train_len = (self.train_w > 0).sum(1)
        self.eval_sets = {}
        for split in (VALID, TEST):
            m = td.split == split
            ew = windows(stream.offsets, stream.seq_items, td.user[m], td.end[m], L)
            order = sort_by_length(ew)
            self.eval_sets[split] = (ew[order], td.target[m][order].astype(np.int64))
        n = stream.n_items
        self.n_neg = max(1, int(round(cfg.train.sampled_fraction * n)))
        self._module = nn.ModuleDict({"backbone": backbone, "head": head})

    def module(self) -> nn.Module:
        return self._module

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self._module.parameters() if p.requires_grad]

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train_w) // batch_size)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[torch.Tensor]:
        for idx in bucketed_batches(self.train_len, batch_size, rng):
            yield torch.from_numpy(trim_left(self.train_w[idx]))

    def loss(self, batch: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        inp, tgt = batch[:, :-1], batch[:, 1:]
        h = self.backbone.encode(inp)
        m = (inp > 0) & (tgt > 0)
        loss = self.head.loss(h[m], tgt[m], self.cfg.train.loss, self.n_neg, gen)
        return loss, int(m.sum())

    def user_vectors(self, w: np.ndarray) -> torch.Tensor:
        return self.backbone.encode(torch.from_numpy(trim_left(w)))[:, -1]

    def evaluate(self, split: int) -> dict[str, float]:
        w, targets = self.eval_sets[split]
        bs = self.cfg.train.eval_batch_size
        neg = self.cfg.train.sampled_eval_negatives
        gen = torch.Generator().manual_seed(12345 + split)
        ranks = []
        for s in range(0, len(w), bs):
            u = self.user_vectors(w[s : s + bs])
            t = torch.from_numpy(targets[s : s + bs])
            if neg is None:
                ranks.append(ranks_full(u, self.head.items, t, bias=self.head.bias))
            else:
                ranks.append(ranks_sampled(u, self.head.items, t, neg, gen, bias=self.head.bias))
        r = torch.cat(ranks) if ranks else torch.zeros(0)
        out = rank_metrics(r, self.cfg.train.ks)
        out["protocol"] = "full" if neg is None else f"sampled-{neg}"
        out["examples"] = len(r)
        return out


def build_t1(cfg: StreamConfig, stream: Stream) -> tuple[nn.Module, ItemHead]:
    torch.manual_seed(cfg.train.seed)
    backbone = build_backbone(cfg.model, stream.n_items)
    # SASRec scores items with its input embedding (the paper's shared embedding); NextItNet has its own
    # softmax matrix, as in NextItNet and Conure.
    tied = backbone.item_embedding if cfg.model.name == "sasrec" else None
    return backbone, ItemHead(cfg.model.d, stream.n_items, tied=tied)


def pretrain(cfg: StreamConfig, stream: Stream, out: Path, task: str | None = None, log=print) -> dict:
    """Train the first next-item task of the stream and write a backbone artifact to `out`."""
    from .artifacts import save_backbone

    task = task or next(t.name for t in cfg.tasks if t.kind == "next_item")
    backbone, head = build_t1(cfg, stream)
    obj = NextItemObjective(stream, task, backbone, head, cfg)
    n_params = sum(p.numel() for p in obj.trainable())
    log(
        f"pretraining {cfg.model.name} on {cfg.name}/{task}: {n_params:,} parameters, "
        f"{len(obj.train_w):,} training sequences, loss {cfg.train.loss}"
    )
    t0 = time.perf_counter()
    res = fit(obj, cfg.train, out / "train", log=log)
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
    save_backbone(out, backbone, head, meta)
    return meta
