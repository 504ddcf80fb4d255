"""What the engine trains: one Objective per task kind, over a `TaskNet` supplied by a method.

A TaskNet is how a method presents its network for one task: an `encode` function (left-padded
items -> hidden states [B, L, d]), the task's head, the module whose weights are checkpointed, and
the parameters to train. The objective owns the data side: windows built once, batches by slicing,
the loss, and exact evaluation on the task's own splits.

- next_item: loss at every position of every training sequence (no prefix augmentation);
- item_rec: one example per target item, the user vector at the last position of the input;
- classify: cross-entropy on the user vector; accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import StreamConfig
from .data.batches import history_windows, sort_by_length, trim_left, windows
from .data.stream import TEST, TRAIN, VALID, Stream, TaskData
from .engine import Objective
from .heads import ClassHead, ItemHead
from .metrics import accuracy, rank_metrics, ranks_from_scores, ranks_full, ranks_sampled


@dataclass
class TaskNet:
    encode: Callable[[torch.Tensor], torch.Tensor]
    head: nn.Module
    module: nn.Module
    params: list[nn.Parameter]
    # Added to the task loss at every step (MTL's joint T1 term); receives the step's generator.
    extra_loss: Callable[[torch.Generator], torch.Tensor] | None = None
    # True when nothing before the head trains (FineSmax): user vectors are then computed once per
    # task and reused every epoch, which is exact because a frozen backbone runs in eval mode.
    frozen_encoder: bool = False
    # Called after every optimizer step (Conure restores the weights that earlier tasks own).
    after_step: Callable[[], None] | None = None
    extras: dict = field(default_factory=dict)


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


@dataclass
class EvalSet:
    windows: np.ndarray  # [n, L] sorted by length
    targets: np.ndarray
    users: np.ndarray
    ends: np.ndarray


class TaskObjective(Objective):
    """Shared machinery: windows, evaluation sets, batching of (window, target) examples."""

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig, width_extra: int = 0) -> None:
        self.stream, self.net, self.cfg = stream, net, cfg
        self.td: TaskData = stream.task(task)
        self.L = cfg.sequence.max_length
        self.n_neg = max(1, int(round(cfg.train.sampled_fraction * stream.n_items)))  # sampled softmax
        td = self.td
        tr = td.split == TRAIN
        self.train_w, self.train_t = self._train_examples(td.user[tr], td.end[tr], td.target[tr], self.L + width_extra)
        self.eval_sets: dict[int, EvalSet] = {}
        for split in (VALID, TEST):
            m = td.split == split
            w = windows(stream.offsets, stream.seq_items, td.user[m], td.end[m], self.L)
            order = sort_by_length(w)
            self.eval_sets[split] = EvalSet(
                w[order], td.target[m][order].astype(np.int64), td.user[m][order], td.end[m][order]
            )

    def _train_examples(self, user, end, target, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Training windows and targets: one window per example."""
        return windows(self.stream.offsets, self.stream.seq_items, user, end, width), target.astype(np.int64)

    def module(self) -> nn.Module:
        return self.net.module

    def trainable(self) -> list[nn.Parameter]:
        return self.net.params

    def after_step(self) -> None:
        if self.net.after_step is not None:
            self.net.after_step()

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train_w) // batch_size)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator:
        lengths = (self.train_w > 0).sum(1)
        for idx in bucketed_batches(lengths, batch_size, rng, self.cfg.train.length_buckets):
            w = None if self.net.frozen_encoder else torch.from_numpy(trim_left(self.train_w[idx]))
            yield torch.from_numpy(idx), w, torch.from_numpy(self.train_t[idx])

    _cache: torch.Tensor | None = None

    def _train_user_vectors(self, idx: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """User vectors of training rows `idx`: from the cache when the encoder is frozen."""
        if self.net.frozen_encoder:
            if self._cache is None:
                with torch.no_grad():
                    bs = self.cfg.train.eval_batch_size
                    order = sort_by_length(self.train_w)
                    vecs = torch.cat(
                        [self.user_vectors(self.train_w[order[s : s + bs]]) for s in range(0, len(order), bs)]
                    )
                    self._cache = torch.empty_like(vecs)
                    self._cache[torch.from_numpy(order)] = vecs
            return self._cache[idx]
        return self.net.encode(w)[:, -1]

    def _with_extra(self, loss: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return loss if self.net.extra_loss is None else loss + self.net.extra_loss(gen)

    def user_vectors(self, w: np.ndarray) -> torch.Tensor:
        return self.net.encode(torch.from_numpy(trim_left(w)))[:, -1]

    def user_vectors_dedup(self, w: np.ndarray, users: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        """User vectors for rows that may repeat the same (user, end): each input is encoded once."""
        key = users.astype(np.int64) * (1 << 32) + ends.astype(np.int64)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        if len(first) == len(key):
            return self.user_vectors(w)
        return self.user_vectors(w[first])[torch.from_numpy(inverse.reshape(-1))]

    def seen(self, users: np.ndarray, ends: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs of every item in each example's input history."""
        lens = ends.astype(np.int64)
        rows = np.repeat(np.arange(len(users)), lens)
        first = np.repeat(self.stream.offsets[users] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        items = self.stream.seq_items[first + np.arange(lens.sum())]
        return torch.from_numpy(rows), torch.from_numpy(items.astype(np.int64))

    def _rank_items(self, split: int) -> dict:
        """Rank each target among the catalogue (exact by default) and summarise."""
        es, head, tc = self.eval_sets[split], self.net.head, self.cfg.train
        gen = torch.Generator().manual_seed(12345 + split)
        ranks = []
        for s in range(0, len(es.windows), tc.eval_batch_size):
            sl = slice(s, s + tc.eval_batch_size)
            u, t = self.user_vectors_dedup(es.windows[sl], es.users[sl], es.ends[sl]), torch.from_numpy(es.targets[sl])
            if tc.sampled_eval_negatives is None:
                seen = self.seen(es.users[sl], es.ends[sl]) if tc.exclude_seen else None
                ranks.append(ranks_full(u, head.items, t, bias=head.bias, exclude=seen))
            else:
                ranks.append(ranks_sampled(u, head.items, t, tc.sampled_eval_negatives, gen, bias=head.bias))
        r = torch.cat(ranks) if ranks else torch.zeros(0)
        out: dict = rank_metrics(r, tc.ks, ci=split == TEST)
        if tc.sampled_eval_negatives is None:
            out["protocol"] = "full" + ("-exclude-seen" if tc.exclude_seen else "")
        else:
            out["protocol"] = f"sampled-{tc.sampled_eval_negatives}"
        out["examples"] = len(r)
        return out


class NextItemObjective(TaskObjective):
    """T1: predict every next item of every training sequence (windows are L + 1 wide)."""

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> None:
        super().__init__(stream, task, net, cfg, width_extra=1)
        keep = (self.train_w > 0).sum(1) >= 2  # a row needs an input and a target
        self.train_w, self.train_t = self.train_w[keep], self.train_t[keep]
        self.monitor = cfg.train.monitor

    def _train_examples(self, user, end, target, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cfg.train.history == "last":
            return super()._train_examples(user, end, target, width)
        w = history_windows(self.stream.offsets, self.stream.seq_items, user, end, width)
        return w, w[:, -1].copy()  # the targets that matter are the windows shifted by one (see loss)

    def loss(self, batch, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        _, w, _ = batch
        inp, tgt = w[:, :-1], w[:, 1:]
        h = self.net.encode(inp)
        m = (inp > 0) & (tgt > 0)
        loss = self.net.head.loss(h[m], tgt[m], self.cfg.train.loss, self.n_neg, gen)
        return self._with_extra(loss, gen), int(m.sum())

    def evaluate(self, split: int) -> dict:
        return self._rank_items(split)


class ItemRecObjective(TaskObjective):
    """Item recommendation on another behaviour: the user vector scores the target item.

    All examples of a user read the same input (the whole T1 sequence), so the encoder runs once per
    user, not once per example: a batch is a set of users, and the loss is the mean over all their
    targets. ML-1M's T2 has 60 targets per user on average, so this is ~60x less encoder work than
    one pass per example, for the same objective (only which examples share a step changes).
    """

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> None:
        super().__init__(stream, task, net, cfg)
        self.monitor = cfg.train.monitor
        td, tr = self.td, self.td.split == TRAIN
        users, first, counts = np.unique(td.user[tr], return_index=True, return_counts=True)
        order = np.argsort(td.user[tr], kind="stable")
        self.train_w = self.train_w[first]  # one window per user
        self.train_t = self.train_t[order]  # targets grouped by user, in user order
        self.t_off = np.concatenate([[0], np.cumsum(counts)])

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train_w) // batch_size)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator:
        lengths = (self.train_w > 0).sum(1)
        for idx in bucketed_batches(lengths, batch_size, rng, self.cfg.train.length_buckets):
            counts = self.t_off[idx + 1] - self.t_off[idx]
            rows = np.repeat(np.arange(len(idx)), counts)
            pos = np.repeat(self.t_off[idx] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            targets = self.train_t[pos + np.arange(counts.sum())]
            w = None if self.net.frozen_encoder else torch.from_numpy(trim_left(self.train_w[idx]))
            yield torch.from_numpy(idx), w, torch.from_numpy(rows), torch.from_numpy(targets)

    def loss(self, batch, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        idx, w, rows, t = batch
        u = self._train_user_vectors(idx, w)
        loss = self.net.head.loss(u[rows], t, self.cfg.train.item_loss, self.n_neg, gen)
        return self._with_extra(loss, gen), len(t)

    def evaluate(self, split: int) -> dict:
        return self._rank_items(split)


class ClassifyObjective(TaskObjective):
    """Profile prediction: cross-entropy on the user vector; accuracy (pessimistic on ties)."""

    monitor = "accuracy"

    def loss(self, batch, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        idx, w, t = batch
        loss = self.net.head.loss(self._train_user_vectors(idx, w), t)
        return self._with_extra(loss, gen), len(t)

    def evaluate(self, split: int) -> dict:
        es, bs = self.eval_sets[split], self.cfg.train.eval_batch_size
        ranks = []
        for s in range(0, len(es.windows), bs):
            scores = self.net.head(self.user_vectors(es.windows[s : s + bs]))
            ranks.append(ranks_from_scores(scores, torch.from_numpy(es.targets[s : s + bs])))
        r = torch.cat(ranks) if ranks else torch.zeros(0)
        return {"accuracy": accuracy(r), "protocol": "accuracy", "examples": len(r)}


OBJECTIVES = {"next_item": NextItemObjective, "item_rec": ItemRecObjective, "classify": ClassifyObjective}


def objective_for(stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> TaskObjective:
    return OBJECTIVES[stream.task(task).kind](stream, task, net, cfg)


def new_head(stream: Stream, task: str, d: int) -> nn.Module:
    td = stream.task(task)
    if td.kind == "classify":
        return ClassHead(d, len(td.classes or []))
    return ItemHead(d, stream.n_items)
