"""MPT-Rec in the continual stream (Bai et al., arXiv 2408.17214; its tabular form and what is the
paper's is in tabular/mptrec.py), strictly sequential like Conure and PCL: ../shared/papers/mptrec.md
section 7, option B, a design of ours.

T1 pre-trains the backbone (next item); it is then frozen with the item embeddings. Each later task n
learns, with everything earlier frozen:
    u      the frozen backbone's states (the task-sharing representation)
    s_n    = MLP_n(u)                                  its own expert (two layers of d, ReLU)
    a      = softmax(LayerNorm(W2 ReLU(W1 x)) [p_1..p_{n-1}]' / tau)   attention over the earlier prompts,
             x = the mean of the user's input item embeddings (the row's input summary)
    s~_n   = (s_n + sum_j a_j s_j) * p_n               the earlier tasks' frozen experts, mixed in
    f      = g[0] s~_n + g[1] u,  g = softmax(W_g x)
and its head reads f (per position; the task's pooling then takes the last one or the mean). Item tasks
score against the frozen item embeddings with a bias of their own (or their own softmax), profile tasks
classify. The first task after T1 has no earlier prompt to attend to: s~ = s_n * p_n.

Each task's module keeps frozen copies of the earlier experts and prompts it reads, so its adapter
serves alone on the base, and a finished task's outputs never change (zero forgetting, bit for bit).
The variants of the authors' code are settings: attention `fixed` (1/(n-1) each) or `task_embedding`
(softmax(P p_n / tau), the same for every user), gate `fixed` ([0.1, 0.9]).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..backbones import Backbone
from ..config import MethodSettings
from ..tasknet import Batch, SequenceEncoder, TaskNet, pool
from .base import FrozenAfterFirst, LoadedBase, TaskInfo, prefixed, strip


class MPTRecSettings(MethodSettings):
    temperature: float = Field(150.0, gt=0.0)  # the authors' tau
    attention: Literal["instance", "fixed", "task_embedding"] = "instance"
    gate: Literal["learned", "fixed"] = "learned"
    item_head: Literal["tied", "softmax"] = "tied"
    tied_bias: Literal["log_prior", "train"] = "log_prior"
    # Learning rate of the tasks after T1; None: the task's own train.lr.
    lr: float | None = Field(None, gt=0.0)


def _expert(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())


class TaskPromptExperts(nn.Module):
    """One task's expert, prompt, projection and gate, with frozen copies of the earlier tasks' experts
    and prompts (what its attention mixes)."""

    earlier_prompts: torch.Tensor

    def __init__(self, d: int, n_earlier: int, settings: MPTRecSettings, own_expert: bool = True) -> None:
        super().__init__()
        if not (own_expert or n_earlier):
            raise ValueError("a task without an expert of its own needs earlier experts to mix")
        self.settings = settings
        # The paper's new task has no expert of its own, only the mix of the earlier ones
        # (mptrec_faithful); the sequential form gives every task one (the first has nothing to mix).
        self.expert = _expert(d) if own_expert else None
        self.prompt = nn.Parameter(torch.randn(d))  # N(0, 1), as the authors' task embeddings
        self.earlier = nn.ModuleList(_expert(d) for _ in range(n_earlier))
        self.register_buffer("earlier_prompts", torch.zeros(n_earlier, d))
        if n_earlier and settings.attention == "instance":
            self.project = nn.Sequential(
                nn.Linear(d, d // 2, bias=False), nn.ReLU(), nn.Linear(d // 2, d, bias=False), nn.LayerNorm(d)
            )
        if settings.gate == "learned":
            self.gate = nn.Linear(d, 2, bias=False)

    def copy_earlier(self, earlier: list[TaskPromptExperts]) -> None:
        with torch.no_grad():
            for j, e in enumerate(earlier):
                assert e.expert is not None  # only tasks with an expert of their own are mixed
                self.earlier[j].load_state_dict(e.expert.state_dict())
                self.earlier_prompts[j] = e.prompt
        for p in self.earlier.parameters():
            p.requires_grad_(False)

    def forward(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """u: [B, L, d] frozen states, x: [B, d] input summary -> f [B, L, d]."""
        s = self.expert(u) if self.expert is not None else torch.zeros_like(u)
        n = len(self.earlier)
        if n:
            st = self.settings
            if st.attention == "fixed":
                a = torch.full((len(x), n), 1.0 / n, device=x.device)
            elif st.attention == "task_embedding":
                a = torch.softmax(self.earlier_prompts @ self.prompt / st.temperature, -1).expand(len(x), -1)
            else:
                a = torch.softmax(self.project(x) @ self.earlier_prompts.T / st.temperature, -1)
            mixed = torch.stack([e(u) for e in self.earlier], -1)  # [B, L, d, n]
            s = s + (mixed * a[:, None, None, :]).sum(-1)
        if self.settings.gate == "fixed":
            g0, g1 = 0.1, 0.9
            return g0 * s * self.prompt + g1 * u
        g = torch.softmax(self.gate(x), -1)[:, None, :]  # [B, 1, 2]
        return g[..., :1] * (s * self.prompt) + g[..., 1:] * u


class PromptExpertEncoder(SequenceEncoder):
    """The backbone (frozen, unless `train_backbone`: mptrec_faithful's joint stage 1), then a task's
    prompt-scaled experts on its states."""

    def __init__(self, backbone: Backbone, task: TaskPromptExperts, train_backbone: bool = False) -> None:
        super().__init__(backbone)
        self.task, self.train_backbone = task, train_backbone

    def states(self, batch: Batch) -> torch.Tensor:
        items = batch["items"]
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            u = self.backbone.encode(items)
            x = pool(F.embedding(items, self.backbone.item_embedding.weight, padding_idx=0), items, "mean")
        return self.task(u, x)


class MPTRec(FrozenAfterFirst):
    name = "mptrec"
    Settings: ClassVar[type[MethodSettings]] = MPTRecSettings
    settings: MPTRecSettings

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.tasks = nn.ModuleDict()  # task -> TaskPromptExperts (tasks after T1)

    def _encoder(self, task: str) -> SequenceEncoder:
        if task not in self.tasks:  # T1: the plain backbone
            return SequenceEncoder(self.backbone)
        return PromptExpertEncoder(self.backbone, self.tasks[task])  # type: ignore[arg-type]

    def before_task(self, task: TaskInfo) -> TaskNet:
        if task.index == 0:
            return self.learn_first_task(task)
        torch.manual_seed(self.cfg.train.seed * 1000 + 900 + task.index)
        earlier = [self.tasks[t] for t in self.learned if t in self.tasks]
        tp = TaskPromptExperts(self.backbone.d, len(earlier), self.settings).to(self.device)
        tp.copy_earlier(earlier)  # type: ignore[arg-type]
        self.tasks[task.name] = tp
        s = self.settings
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        module = nn.ModuleDict({"task": tp, "head": head})
        return self.net(self._encoder(task.name), head, tp, head, module=module)

    def after_task(self, task: TaskInfo) -> None:
        if task.index > 0:
            self.freeze(self.tasks[task.name])
        super().after_task(task)

    def task_net(self, task: str) -> TaskNet:
        return self.net(self._encoder(task), self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads, "tasks": self.tasks})

    def export(self, task: str) -> dict[str, torch.Tensor]:
        out = super().export(task)
        if task in self.tasks:
            out.update(prefixed("task", self.tasks[task]))
        return out

    @classmethod
    def load_adapter(cls, base: LoadedBase, config: dict, tensors: dict, device: torch.device) -> TaskNet:
        net = super().load_adapter(base, config, tensors, device)
        sd = strip("task", tensors)
        if not sd:
            return net  # T1
        s = cls.Settings.model_validate(config["settings"])
        own = any(k.startswith("expert.") for k in sd)
        tp = TaskPromptExperts(base.backbone.d, len(sd["earlier_prompts"]), s, own_expert=own)  # type: ignore[arg-type]
        tp.load_state_dict(sd)
        return TaskNet(PromptExpertEncoder(base.backbone, tp.to(device).eval()), net.head, net.module, [])
