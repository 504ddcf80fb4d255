"""Profile objectives (a label per user): classify (cross-entropy; accuracy, with the discordant users
against the majority class for a McNemar test) and binary (one logit; ROC AUC). Registered by task kind
with the item objectives of objectives.py."""

from __future__ import annotations

from typing import ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import StreamConfig, TrainConfig
from .data.stream import Stream
from .heads import BinaryHead, ClassHead
from .metrics import accuracy, auc, ranks_from_scores
from .objectives import TaskObjective, register
from .tasknet import Batch, TaskNet


class ProfileObjective(TaskObjective):
    """Profile tasks (a label per user): the head reads the user vector; `metric` is the one a report
    shows, and early stopping watches it too unless train.monitor is "log_loss" (the validation
    cross-entropy: smooth where accuracy on a few hundred users sits on the majority class for epochs
    while the model improves); train.class_weight=balanced weighs the loss by inverse class frequency."""

    metric: ClassVar[str]

    def __init__(self, stream: Stream, task: str, net: TaskNet, cfg: StreamConfig) -> None:
        super().__init__(stream, task, net, cfg)
        self.monitor = "log_loss" if cfg.train.monitor == "log_loss" else self.metric

    @classmethod
    def report_metric(cls, train: TrainConfig) -> str:
        return cls.metric

    _class_weights: torch.Tensor | None = None

    @property
    def class_weights(self) -> torch.Tensor | None:
        """train.class_weight=balanced: per-class weights n / (K x count) for classify tasks, the positive
        weight negatives / positives for binary ones; None otherwise (the plain loss)."""
        if self.cfg.train.class_weight == "none":
            return None
        if self._class_weights is None:
            t = self.train_t.astype(np.int64)
            k = max(len(self.td.classes or []), int(t.max()) + 1 if len(t) else 1)
            counts = np.bincount(t, minlength=k).astype(np.float64)
            w = counts[0] / max(counts[1], 1.0) if self.td.kind == "binary" else len(t) / (k * np.maximum(counts, 1.0))
            self._class_weights = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        return self._class_weights

    def loss(self, batch: Batch, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        t = batch["target"]
        loss = cast(ClassHead | BinaryHead, self.net.head).loss(self.vectors(batch), t, self.class_weights)
        return self._with_extra(loss, gen), len(t)


@register("classify")
class ClassifyObjective(ProfileObjective):
    """Profile prediction: cross-entropy on the user vector; accuracy (pessimistic on ties)."""

    metric = "accuracy"

    @classmethod
    def new_head(cls, classes: list[str] | None, d: int, n_items: int) -> nn.Module:
        return ClassHead(d, len(classes or []))

    def evaluate(self, split: int) -> dict:
        ranks, targets, nll = [], [], 0.0
        for u, t in self._eval_chunks(split):
            logits = self.net.head(u)
            ranks.append(ranks_from_scores(logits, t))
            targets.append(t.cpu())
            nll += float(F.cross_entropy(logits.float(), t, reduction="sum"))
        r = torch.cat(ranks) if ranks else torch.zeros(0)
        out = {"accuracy": accuracy(r), "log_loss": nll / max(len(r), 1), "protocol": "accuracy", "examples": len(r)}
        return out | self._versus_majority(r, torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long))

    def _versus_majority(self, ranks: torch.Tensor, targets: torch.Tensor) -> dict:
        """The same examples answered by the training split's majority class, paired with the model's
        answers: its accuracy, and the discordant pairs an exact McNemar test reads (`wins`: the model
        is right where the majority class is wrong; `losses`: the reverse). A test of "the model beats
        always answering the majority class" on the same users is then a binomial test of wins among
        wins + losses (lifelongrec.significance.mcnemar_greater)."""
        if len(self.train_t) == 0 or len(targets) == 0:
            return {}
        majority = int(np.bincount(self.train_t.astype(np.int64)).argmax())
        right, maj_right = ranks.cpu().numpy() == 1, targets.numpy() == majority
        return {
            "majority_accuracy": float(maj_right.mean()),
            "wins_vs_majority": int((right & ~maj_right).sum()),
            "losses_vs_majority": int((~right & maj_right).sum()),
        }


@register("binary")
class BinaryObjective(ProfileObjective):
    """A yes/no label per user (class 1 = the positive value): one logit, binary cross-entropy, scored
    by ROC AUC (scikit-learn's roc_auc_score), with accuracy at the 0.5 threshold beside it."""

    metric = "AUC"

    @classmethod
    def new_head(cls, classes: list[str] | None, d: int, n_items: int) -> nn.Module:
        return BinaryHead(d)

    def evaluate(self, split: int) -> dict:
        scores, labels = [], []
        for u, t in self._eval_chunks(split):
            scores.append(self.net.head(u).detach().float().cpu())
            labels.append(t.cpu())
        s = torch.cat(scores).numpy() if scores else np.zeros(0)
        y = torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64)
        acc = float(((s > 0).astype(np.int64) == y).mean()) if len(y) else float("nan")
        nll = float("nan")
        if len(y):
            nll = float(F.binary_cross_entropy_with_logits(torch.from_numpy(s), torch.from_numpy(y).float()))
        return {"AUC": auc(s, y), "accuracy": acc, "log_loss": nll, "protocol": "auc", "examples": len(y)}
