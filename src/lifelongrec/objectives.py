"""What the engine trains: one Objective per task kind, over a `TaskNet` supplied by a method.

Objectives are registered by task kind and each declares the metric a report shows for it:

- next_item: loss at every position of every training sequence (no prefix augmentation); MRR@k;
- item_rec: one example per target item, the user vector at the last position of the input; MRR@k;
- classify: cross-entropy on the user vector; accuracy;
- binary: one logit, binary cross-entropy; ROC AUC (scikit-learn).

The profile kinds (classify, binary) live in objectives_profile.py, imported at the end of this
module so that they register with the rest.

The objective owns the data side: windows described once (each batch builds its rows), batches (dicts
of named tensors) by slicing, the loss, and exact evaluation on the task's own splits, all on the run's
device.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed as dist
from .config import StreamConfig, TrainConfig
from .data.batches import (
    Windows,
    bucketed_batches,
    described_windows,
    history_windows,
    packed_batches,
    sort_by_length,
    trim_left,
)
from .data.stream import TEST, TRAIN, VALID, Stream, TaskData
from .device import resolve_device
from .engine import Objective
from .errors import ConfigError
from .heads import BinaryHead, ClassHead, ItemHead, popularity_negatives
from .metrics import rank_metrics, ranks_full, ranks_sampled
from .tasknet import Batch, TaskNet, head_input

OBJECTIVES: dict[str, type[TaskObjective]] = {}


def register(kind: str):
    def deco(cls):
        OBJECTIVES[kind] = cls
        cls.kind = kind
        return cls

    return deco


@dataclass
class EvalSet:
    windows: Windows  # [n, L] sorted by length; slices build their rows
    targets: np.ndarray
    users: np.ndarray
    ends: np.ndarray


def task_pooling(kind: str, train: TrainConfig) -> str:
    """The user vector a task's head reads: next_item tasks are trained at every position, so they
    always predict from the last state; other tasks read train.pooling."""
    return "last" if kind == "next_item" else train.pooling


def item_monitor(train: TrainConfig, task: str) -> str:
    """An item task's early-stopping metric (a ranking metric; a validation loss is for profile tasks)."""
    if train.monitor == "log_loss":
        raise ConfigError(
            f"task {task}: monitor log_loss is for profile tasks; an item task watches MRR@k, NDCG@k or HR@k "
            "(set it in the profile tasks' own `train:` section)"
        )
    return train.monitor


def _progress(it, total: int, desc: str):
    """A progress bar for long evaluations; silent when stderr is not a terminal."""
    return tqdm(it, total=total, desc=desc, leave=False, disable=total < 50 or not sys.stderr.isatty())


class TaskObjective(Objective):
    """Shared machinery: windows, evaluation sets, batching of (window, target) examples."""

    kind: ClassVar[str]

    @classmethod
    def report_metric(cls, train: TrainConfig) -> str:
        """The metric a report shows for this kind of task."""
        return train.monitor

    @classmethod
    def new_head(cls, classes: list[str] | None, d: int, n_items: int) -> nn.Module:
        return ItemHead(d, n_items)

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig, width_extra: int = 0) -> None:
        self.stream, self.net, self.cfg = stream, net, cfg
        self.device = resolve_device(cfg.train.device)
        self.td: TaskData = stream.task(task)
        self.L = cfg.input_length(cfg.train)
        self.n_neg = max(1, int(round(cfg.train.sampled_fraction * stream.n_targets(task))))  # sampled softmax
        td = self.td
        tr = td.split == TRAIN
        self.train_w, self.train_t = self._train_examples(td.user[tr], td.end[tr], td.target[tr], self.L + width_extra)
        self.eval_sets: dict[int, EvalSet] = {}
        for split in (VALID, TEST):
            m = td.split == split
            w = described_windows(stream.offsets, stream.seq_items, td.user[m], td.end[m], self.L)
            order = sort_by_length(w)
            self.eval_sets[split] = EvalSet(
                w.select(order), td.target[m][order].astype(np.int64), td.user[m][order], td.end[m][order]
            )

    def require_examples(self) -> None:
        """Refuse to train on nothing: a task needs training examples, and validation examples because
        early stopping watches them (a split like [0, 0, 1] would otherwise "train" and exit 0)."""
        n_train, n_valid = len(self.train_w), len(self.eval_sets[VALID].windows)
        if n_train and n_valid:
            return
        task = next(t for t in self.cfg.tasks if t.name == self.td.name)
        fractions = list(self.cfg.split_for(task).fractions)
        raise ConfigError(
            f"task {self.td.name}: {n_train} training and {n_valid} validation examples (split fractions "
            f"{fractions}); training needs both (early stopping watches validation): give the train and "
            "valid fractions more weight"
        )

    def _train_examples(self, user, end, target, width: int) -> tuple[Windows, np.ndarray]:
        """Training windows (described; a batch builds its rows) and targets: one window per example."""
        return described_windows(self.stream.offsets, self.stream.seq_items, user, end, width), target.astype(np.int64)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    # ------------------------------------------------------------------ the engine's side

    def module(self) -> nn.Module:
        return self.net.module

    def trainable(self) -> list[nn.Parameter]:
        return self.net.params

    def on_fit_start(self) -> None:
        for cb in self.net.callbacks:
            cb.on_fit_start(self)

    def before_step(self) -> None:
        for cb in self.net.callbacks:
            cb.before_step()

    def after_step(self) -> None:
        for cb in self.net.callbacks:
            cb.after_step()

    def _with_extra(self, loss: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for cb in self.net.callbacks:
            extra = cb.extra_loss(gen)
            if extra is not None:
                loss = loss + extra
        return loss

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train_w) // batch_size)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        lengths = self.train_w.lengths()
        for idx in bucketed_batches(lengths, batch_size, rng, self.cfg.train.length_buckets):
            yield {
                "row": self._t(idx),
                "items": self._t(trim_left(self.train_w[idx])),
                "target": self._t(self.train_t[idx]),
            }

    # ------------------------------------------------------------------ user vectors

    def vectors(self, batch: Batch, encoder=None) -> torch.Tensor:
        """The user vectors the task's head reads (train.pooling), through `encoder` (default: the net's).
        A cached encoder answers training rows from its cache, which was filled through this same path."""
        enc = encoder or self.net.encoder
        if getattr(enc, "cache", None) is not None and "row" in batch:
            return enc.user_vectors(batch)
        return head_input(enc, batch, task_pooling(self.td.kind, self.cfg.train))

    def user_vectors(self, w: np.ndarray, encoder=None) -> torch.Tensor:
        return self.vectors({"items": self._t(trim_left(w))}, encoder)

    def train_user_vectors_all(self, encoder) -> torch.Tensor:
        """Every training row's user vector, in row order (computed in length-sorted chunks)."""
        bs = self.cfg.train.eval_batch_size
        order = sort_by_length(self.train_w)
        vecs = torch.cat(
            [self.user_vectors(self.train_w[order[s : s + bs]], encoder) for s in range(0, len(order), bs)]
        )
        out = torch.empty_like(vecs)
        out[self._t(order)] = vecs
        return out

    def user_vectors_dedup(self, w: np.ndarray, users: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        """User vectors for rows that may repeat the same (user, end): each input is encoded once."""
        key = users.astype(np.int64) * (1 << 32) + ends.astype(np.int64)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        if len(first) == len(key):
            return self.user_vectors(w)
        return self.user_vectors(w[first])[self._t(inverse.reshape(-1))]

    def seen(self, users: np.ndarray, ends: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs of every item in each example's input history."""
        lens = ends.astype(np.int64)
        rows = np.repeat(np.arange(len(users)), lens)
        first = np.repeat(self.stream.offsets[users] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        items = self.stream.seq_items[first + np.arange(lens.sum())]
        return self._t(rows), self._t(items.astype(np.int64))

    def _rank_items(self, split: int) -> dict:
        """Rank each target among the catalogue (exact by default) and summarise."""
        es, head, tc = self.eval_sets[split], cast(ItemHead, self.net.head), self.cfg.train
        gen = torch.Generator(device=self.device if self.device.type != "meta" else "cpu").manual_seed(12345 + split)
        ranks = []
        starts = range(0, len(es.windows), tc.eval_batch_size)
        mine = dist.my_chunks(len(starts))  # under torchrun each rank ranks its chunks; gathered below
        for s in _progress((starts[i] for i in mine), len(mine), f"evaluating {self.td.name}"):
            sl = slice(s, s + tc.eval_batch_size)
            u, t = self.user_vectors_dedup(es.windows[sl], es.users[sl], es.ends[sl]), self._t(es.targets[sl])
            if tc.sampled_eval_negatives is None:
                seen = self.seen(es.users[sl], es.ends[sl]) if tc.exclude_seen else None
                ranks.append(ranks_full(u, head.items, t, bias=head.bias, exclude=seen))
            else:
                ranks.append(ranks_sampled(u, head.items, t, tc.sampled_eval_negatives, gen, bias=head.bias))
        if dist.world() > 1:
            ranks = dist.gather_chunks([r.cpu() for r in ranks], len(starts))
        r = torch.cat(ranks) if ranks else torch.zeros(0)
        out: dict = rank_metrics(r, tc.ks, ci=split == TEST)
        if tc.sampled_eval_negatives is None:
            out["protocol"] = "full" + ("-exclude-seen" if tc.exclude_seen else "")
        else:
            out["protocol"] = f"sampled-{tc.sampled_eval_negatives}"
        out["examples"] = len(r)
        return out

    def _eval_chunks(self, split: int):
        es, bs = self.eval_sets[split], self.cfg.train.eval_batch_size
        starts = range(0, len(es.windows), bs)
        if dist.world() == 1:
            for s in _progress(starts, len(starts), f"evaluating {self.td.name}"):
                yield self.user_vectors(es.windows[s : s + bs]), self._t(es.targets[s : s + bs])
            return
        # Under torchrun: each rank encodes its chunks; all ranks get every chunk's vectors, in order.
        mine = [self.user_vectors(es.windows[starts[i] : starts[i] + bs]).cpu() for i in dist.my_chunks(len(starts))]
        for s, u in zip(starts, dist.gather_chunks(mine, len(starts))):
            yield u.to(self.device), self._t(es.targets[s : s + bs])


@register("next_item")
class NextItemObjective(TaskObjective):
    """T1: predict every next item of every training sequence (windows are L + 1 wide)."""

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> None:
        super().__init__(stream, task, net, cfg, width_extra=1)
        keep = self.train_w.lengths() >= 2  # a row needs an input and a target
        self.train_w, self.train_t = self.train_w.select(keep), self.train_t[keep]
        self.monitor = item_monitor(cfg.train, task)

    def _train_examples(self, user, end, target, width: int) -> tuple[Windows, np.ndarray]:
        if self.cfg.train.history == "last":
            return super()._train_examples(user, end, target, width)
        w = history_windows(self.stream.offsets, self.stream.seq_items, user, end, width)
        return w, w.last_items()  # the targets that matter are the windows shifted by one (see loss)

    def loss(self, batch: Batch, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        w = batch["items"]
        inp, tgt = w[:, :-1], w[:, 1:]
        h = self.net.encoder.states({"items": inp})
        m = (inp > 0) & (tgt > 0)
        loss = cast(ItemHead, self.net.head).loss(h[m], tgt[m], self.cfg.train.loss, self.n_neg, gen)
        return self._with_extra(loss, gen), m.sum()

    def evaluate(self, split: int) -> dict:
        return self._rank_items(split)


@register("item_rec")
class ItemRecObjective(TaskObjective):
    """Item recommendation on another behaviour: the user vector scores the target item.

    All examples of a user read the same input (the whole T1 sequence), so the encoder runs once per
    user, not once per example: a batch is a set of users, and the loss is the mean over all their
    targets. ML-1M's T2 has 60 targets per user on average, so this is ~60x less encoder work than
    one pass per example, for the same objective (only which examples share a step changes).
    """

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> None:
        super().__init__(stream, task, net, cfg)
        self.monitor = item_monitor(cfg.train, task)
        td, tr = self.td, self.td.split == TRAIN
        users, first, counts = np.unique(td.user[tr], return_index=True, return_counts=True)
        order = np.argsort(td.user[tr], kind="stable")
        self.train_w = self.train_w.select(first)  # one window per user
        self.train_t = self.train_t[order]  # targets grouped by user, in user order
        self.t_off = np.concatenate([[0], np.cumsum(counts)])
        # Negatives of the sampled/BPR losses: uniform (None), or LambdaFM's static popularity sampler
        # over this task's training targets (Conure's T2/T3), built once.
        self.neg_dist: torch.Tensor | None = None
        if cfg.train.negatives == "popularity":
            p = popularity_negatives(self.train_t, stream.n_targets(task), cfg.train.popularity_rho)
            self.neg_dist = p.to(device=self.device, dtype=torch.float32)

    def n_batches(self, batch_size: int) -> int:
        if self.cfg.train.item_batch == "users":
            return super().n_batches(batch_size)
        return len(packed_batches(np.diff(self.t_off), batch_size, np.random.default_rng(0)))

    def user_batches(self, rng: np.random.Generator, batch_size: int) -> list[np.ndarray]:
        """Users per step: batch_size of them (train.item_batch=users, similar lengths together), or
        whole users packed up to batch_size targets (item_batch=targets)."""
        if self.cfg.train.item_batch == "users":
            return bucketed_batches(self.train_w.lengths(), batch_size, rng, self.cfg.train.length_buckets)
        return packed_batches(np.diff(self.t_off), batch_size, rng)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        for idx in self.user_batches(rng, batch_size):
            counts = self.t_off[idx + 1] - self.t_off[idx]
            rows = np.repeat(np.arange(len(idx)), counts)
            pos = np.repeat(self.t_off[idx] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            targets = self.train_t[pos + np.arange(counts.sum())]
            yield {
                "row": self._t(idx),
                "items": self._t(trim_left(self.train_w[idx])),
                "target_row": self._t(rows),
                "target": self._t(targets),
            }

    def loss(self, batch: Batch, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        u, t = self.vectors(batch), batch["target"]
        head, kind = cast(ItemHead, self.net.head), self.cfg.train.item_loss
        loss = head.loss(u[batch["target_row"]], t, kind, self.n_neg, gen, self.neg_dist)
        return self._with_extra(loss, gen), len(t)

    def evaluate(self, split: int) -> dict:
        return self._rank_items(split)


def objective_class(kind: str) -> type[TaskObjective]:
    if kind not in OBJECTIVES:
        raise KeyError(f"no objective for task kind '{kind}' (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[kind]


def objective_for(stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> TaskObjective:
    return objective_class(stream.task(task).kind)(stream, task, net, cfg)


def new_head(stream: Stream, task: str, d: int, bias: str = "zero") -> nn.Module:
    """A new task's head; `bias="log_prior"` starts its bias at the log frequency of each item or class
    among the task's training targets (add-one smoothed), i.e. at the most popular items or the
    majority class (train.head_bias)."""
    td = stream.task(task)
    n_items = stream.n_targets(task)
    head = objective_class(td.kind).new_head(td.classes, d, n_items)
    if bias == "log_prior":
        t = td.target[td.split == TRAIN].astype(np.int64)
        with torch.no_grad():
            if td.kind == "item_rec":
                prior = np.bincount(t, minlength=n_items + 1).astype(np.float64) + 1.0
                cast(ItemHead, head).bias.copy_(torch.from_numpy(np.log(prior / prior[1:].sum())))
            elif td.kind == "classify":
                prior = np.bincount(t, minlength=len(td.classes or [])).astype(np.float64) + 1.0
                cast(ClassHead, head).linear.bias.copy_(torch.from_numpy(np.log(prior / prior.sum())))
            elif td.kind == "binary":
                pos = (t == 1).sum() + 1.0
                cast(BinaryHead, head).linear.bias.fill_(float(np.log(pos / (len(t) - pos + 2.0))))
    return head


# The profile objectives register themselves on import; they subclass TaskObjective above, so the
# import comes last (a cycle Python resolves because every name they need is defined by now).
from .objectives_profile import BinaryObjective, ClassifyObjective, ProfileObjective  # noqa: E402

__all__ = [
    "OBJECTIVES",
    "BinaryObjective",
    "ClassifyObjective",
    "EvalSet",
    "ItemRecObjective",
    "NextItemObjective",
    "ProfileObjective",
    "TaskObjective",
    "bucketed_batches",
    "new_head",
    "objective_class",
    "objective_for",
    "packed_batches",
    "register",
    "task_pooling",
]
