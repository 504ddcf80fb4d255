"""MPT-Rec with its own protocol in the stream (../shared/papers/mptrec.md section 7, option A): the
paper pre-trains several tasks jointly, then adds a new task by prompt tuning alone.

- T1 (next item) is pre-trained as for every method.
- Stage 1, at the second task: T1 and it are learned jointly (K = 2 tasks). The backbone keeps
  training; each of the two tasks gets an expert on the backbone's states, a prompt scaling it and a
  gate with the states (methods/mptrec.py's TaskPromptExperts, with no earlier task to mix). The loss,
  as the paper's stage 1 (tabular/mptrec.py, eq. 8 of mptrec.md):
      L1 = L_T2(fused) + L_T1(fused)                              the two tasks through their experts
         + generic_weight * (L_T2(u) + L_T1(u))                   the same heads on the shared states u
         + env_weight * CE(C(GRL(u)), environment)                 an environment classifier, reversed
  u is the backbone's states (the task-sharing representation). The fused T2 term is the step's own
  batch; the fused T1 term reads one random T1 batch, and the generic terms and the classifier one more
  random T1 batch and one more T2 batch.
  T1's outputs therefore change once, at stage 1: the matrix shows it.
- Every later task: everything from stage 1 frozen; only a new prompt, the attention over the two
  stage-1 prompts (which mixes their frozen experts: no expert of its own, as the paper's new task), a
  gate and a head train. From then on nothing earlier changes, bit for bit.

Ours, not the paper's (mptrec.md sections 6 and 7): the environment of a sample is the task it comes
from (T1 positions: 0, T2 users: 1), fixed. The authors re-assign each sample every 2 epochs to the task
whose fused prediction fits it best, which needs every sample to carry every task's label (a tabular row
does: `lifelongrec tabular run` re-clusters); a stream sample belongs to one task. The classifier's loss
is the mean of the two environments' mean cross-entropies (T1 gives ~30 positions per user, T2 one
vector per user). The gradient-reversal coefficient follows DANN's schedule over the planned optimizer
steps (2 / (1 + exp(-10 p)) - 1), counted in a buffer so that a resumed run continues it exactly.
`generic_weight=0,env_weight=0` is the authors' two-task trainer at commit 5d02623, whose two terms
are commented out (this method before 2026-12-01).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..data.batches import trim_left
from ..heads import ItemHead
from ..objectives import NextItemObjective, TaskObjective, objective_for
from ..tabular.mptrec import grl_alpha, reverse_grad
from ..tasknet import Callback, SequenceEncoder, TaskNet
from .base import SharedBackbone, TaskInfo
from .mptrec import MPTRec, MPTRecSettings, PromptExpertEncoder, TaskPromptExperts
from .mtl import JointT1Loss


class MPTRecFaithfulSettings(MPTRecSettings):
    generic_weight: float = Field(0.9, ge=0.0)  # the authors' uni_coe (lambda_u)
    env_weight: float = Field(0.1, ge=0.0)  # the authors' env_coe (lambda_e)


class EnvironmentClassifier(nn.Module):
    """C: u -> which of the K stage-1 tasks a sample came from, with the steps taken so far (a buffer,
    so the reversal schedule resumes exactly)."""

    steps: torch.Tensor

    def __init__(self, d: int, k: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(d, k)
        nn.init.xavier_uniform_(self.linear.weight)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class Disentangle(Callback):
    """The stage-1 terms beyond the fused losses: each task's head on the shared states u (the generic
    predictions) and the environment classifier behind gradient reversal, on one random T1 batch and
    one random T2 batch per step."""

    def __init__(
        self,
        t1: NextItemObjective,
        t2: TaskObjective,
        clf: EnvironmentClassifier,
        settings: MPTRecFaithfulSettings,
        batch_size: int,
    ) -> None:
        self.t1, self.t2, self.clf, self.s, self.bs = t1, t2, clf, settings, batch_size
        self.total = 1

    def on_fit_start(self, objective: Any) -> None:
        train = objective.cfg.train
        self.total = max(1, objective.n_batches(train.batch_size) * train.epochs)

    def after_step(self) -> None:
        self.clf.steps += 1

    def extra_loss(self, gen: torch.Generator) -> torch.Tensor:
        t1, t2 = self.t1, self.t2
        n = len(t1.train_w)
        idx = torch.randint(n, (min(self.bs, n),), generator=gen, device=gen.device).cpu().numpy()
        w = t1._t(trim_left(t1.train_w[idx]))
        inp, tgt = w[:, :-1], w[:, 1:]
        h = t1.net.encoder.states({"items": inp})
        m = (inp > 0) & (tgt > 0)
        u1 = h[m]
        loss1 = cast(ItemHead, t1.net.head).loss(u1, tgt[m], t1.cfg.train.loss, t1.n_neg, gen)
        seed = int(torch.randint(2**31 - 1, (1,), generator=gen, device=gen.device))
        batch = next(iter(t2.train_batches(np.random.default_rng(seed), self.bs)))
        loss2, _ = t2.loss(batch, gen)
        out = self.s.generic_weight * (loss1 + loss2)
        if self.s.env_weight:
            u2 = t2.vectors(batch)
            alpha = grl_alpha(float(self.clf.steps) / self.total)
            q1, q2 = (self.clf.linear(reverse_grad(u, alpha)) for u in (u1, u2))
            env = (
                F.cross_entropy(q1, torch.zeros_like(q1[:, 0], dtype=torch.long))
                + F.cross_entropy(q2, torch.ones_like(q2[:, 0], dtype=torch.long))
            ) / 2
            out = out + self.s.env_weight * env
        return out


class MPTRecFaithful(MPTRec):
    name = "mptrec_faithful"
    Settings = MPTRecFaithfulSettings
    settings: MPTRecFaithfulSettings

    def before_task(self, task: TaskInfo) -> TaskNet:
        if task.index == 0:
            return self.learn_first_task(task)
        if task.index == 1:
            return self._stage1(task)
        stage1 = [self.tasks[t] for t in self.learned[:2]]
        tp = TaskPromptExperts(self.backbone.d, len(stage1), self.settings, own_expert=False).to(self.device)
        tp.copy_earlier(stage1)  # type: ignore[arg-type]
        self.tasks[task.name] = tp
        s = self.settings
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        return self.net(self._encoder(task.name), head, tp, head, module=nn.ModuleDict({"task": tp, "head": head}))

    def _stage1(self, task: TaskInfo) -> TaskNet:
        t1, d = self.learned[0], self.backbone.d
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        mods = {}
        for name in (t1, task.name):
            mods[name] = self.tasks[name] = TaskPromptExperts(d, 0, self.settings).to(self.device)
        t1_head = self.heads[t1]
        s = self.settings
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        enc1 = PromptExpertEncoder(self.backbone, mods[t1], train_backbone=True)
        t1_obj = NextItemObjective(self.stream, t1, TaskNet(enc1, t1_head, nn.Module(), []), self.cfg)
        clf = EnvironmentClassifier(d).to(self.device)
        module = nn.ModuleDict(
            {"backbone": self.backbone, "tasks": nn.ModuleDict(mods), "t1_head": t1_head, "head": head, "env": clf}
        )
        net = self.net(
            PromptExpertEncoder(self.backbone, mods[task.name], train_backbone=True),
            head,
            self.backbone,
            *mods.values(),
            t1_head,
            head,
            clf,
            module=module,
        )
        net.callbacks.append(JointT1Loss(t1_obj, 1.0, self.cfg.train.batch_size))
        if s.generic_weight or s.env_weight:
            plain = SequenceEncoder(self.backbone)  # u: the shared states, without any task's expert
            t1_plain = NextItemObjective(self.stream, t1, TaskNet(plain, t1_head, nn.Module(), []), self.cfg)
            t2_plain = objective_for(self.stream, task.name, TaskNet(plain, head, nn.Module(), []), self.cfg)
            net.callbacks.append(Disentangle(t1_plain, t2_plain, clf, s, self.cfg.train.batch_size))
        return net

    def after_task(self, task: TaskInfo) -> None:
        if task.index == 0:
            SharedBackbone.after_task(self, task)  # the backbone stays trainable for stage 1
            return
        if task.index == 1:
            for m in (self.backbone, self.heads[self.learned[0]], *self.tasks.values()):
                self.freeze(m)
            SharedBackbone.after_task(self, task)
            return
        super().after_task(task)
