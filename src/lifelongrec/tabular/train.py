"""The tabular tasks as the engine sees them: one Objective over the tasks a model is trained on
(stage 1: the pre-training tasks jointly; stage 2: the new task alone), early stopping on the sum of
their validation AUCs as the MPT-Rec authors do, and AUC per task on any split."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..engine import FitResult, Objective, fit, resume_key
from ..metrics import auc
from .config import MPTRecSettings
from .data import TRAIN, TabularData
from .models import MultiTask
from .mptrec import MPTRec

EVAL_BATCH = 4096


def l2_penalty(model: MultiTask, settings: MPTRecSettings) -> torch.Tensor | float:
    """lambda_emb |E|^2 / 2 + lambda_dnn |W|^2 / 2 over the trainable embedding tables and the experts'
    and towers' weight matrices (not gates, prompts or the environment classifier), as the authors."""
    emb, net = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "embedding" in name:
            emb.append(p)
        elif p.dim() > 1 and not any(k in name for k in ("gate", "prompt", "env_classifier", "project")):
            net.append(p)
    total: torch.Tensor | float = 0.0
    if settings.l2_embedding and emb:
        total = total + settings.l2_embedding * sum((p**2).sum() for p in emb) / 2
    if settings.l2_dnn and net:
        total = total + settings.l2_dnn * sum((p**2).sum() for p in net) / 2
    return total


class TabularObjective(Objective):
    monitor = "AUC_sum"

    def __init__(self, data: TabularData, model: MultiTask, settings: MPTRecSettings, epochs: int) -> None:
        self.data, self.model, self.settings, self.epochs = data, model, settings, epochs
        self.tasks = list(model.tasks)
        self.fields = torch.from_numpy(data.fields)
        self.y = {t: torch.from_numpy(data.labels[t]).float() for t in self.tasks}
        self.train_rows = data.rows(TRAIN)

    def module(self) -> nn.Module:
        return self.model

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def n_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.train_rows) / batch_size)

    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[dict]:
        started = int(self.model.epochs_started)
        m = self.model
        if isinstance(m, MPTRec) and started > 0 and started % self.settings.recluster_every == 0:
            was = m.training
            m.eval()
            for s in range(0, len(self.train_rows), EVAL_BATCH):
                rows = self.train_rows[s : s + EVAL_BATCH]
                m.recluster(self.fields[rows], {t: self.y[t][rows] for t in self.tasks}, torch.arange(s, s + len(rows)))
            m.train(was)
        self.model.epochs_started += 1
        order = rng.permutation(len(self.train_rows))  # positions among the training rows
        n = self.n_batches(batch_size)
        for i, s in enumerate(range(0, len(order), batch_size)):
            yield self.batch(order[s : s + batch_size], (started * n + i) / max(1, self.epochs * n))

    def batch(self, pos: np.ndarray, progress: float) -> dict:
        """The training batch of these positions among the training rows, `progress` of the way through."""
        rows = self.train_rows[pos]
        return {
            "fields": self.fields[rows],
            "y": {t: self.y[t][rows] for t in self.tasks},
            "pos": torch.from_numpy(pos),
            "progress": progress,
        }

    def loss(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        m = self.model
        if isinstance(m, MPTRec):
            loss = m.loss(batch["fields"], batch["y"], batch["pos"], self.settings, batch["progress"])
        else:
            out = m(batch["fields"])
            loss = torch.stack([F.binary_cross_entropy_with_logits(out[t], batch["y"][t]) for t in self.tasks]).sum()
        return loss + l2_penalty(m, self.settings), len(batch["fields"])

    @torch.no_grad()
    def scores(self, split: int) -> dict[str, np.ndarray]:
        rows = self.data.rows(split)
        out: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks}
        for s in range(0, len(rows), EVAL_BATCH):
            got = self.model(self.fields[rows[s : s + EVAL_BATCH]])
            for t in self.tasks:
                out[t].append(got[t].float().numpy())
        return {t: np.concatenate(v) for t, v in out.items()}

    def evaluate(self, split: int) -> dict[str, float]:
        rows = self.data.rows(split)
        res = {f"AUC_{t}": auc(s, self.data.labels[t][rows]) for t, s in self.scores(split).items()}
        res["AUC_sum"] = float(sum(res.values()))
        return res


def train_model(
    data: TabularData,
    model: MultiTask,
    settings: MPTRecSettings,
    train: TrainConfig,
    out: Path,
    log=None,
    key: dict | None = None,
) -> tuple[FitResult, TabularObjective]:
    """Fit `model` into `out` (resuming from its checkpoint); `key` names everything else the run
    depends on (the config), so a checkpoint of other settings is refused rather than continued."""
    torch.manual_seed(train.seed)
    obj = TabularObjective(data, model, settings, train.epochs)
    result = fit(obj, train, out, log=log or (lambda *a, **k: None), key=resume_key(train, **(key or {})))
    return result, obj
