"""Multi-task models over categorical fields: the baselines MPT-Rec is judged against (single task,
Shared-Bottom, MMoE, PLE) and their stage-2 forms for a new task with the stage-1 parts frozen.

Every model maps `fields` [B, F] to one logit per task it serves (`forward -> {task: [B]}`). Layer
shapes follow the MPT-Rec authors' code (../shared/papers/mptrec.md section 2): an MLP is
Linear -> ReLU -> Dropout for every layer, the last included; a tower is such an MLP and a Linear to
one logit. MPT-Rec itself is in tabular/mptrec.py.
"""

from __future__ import annotations

from typing import TypeVar, cast

import torch
from torch import nn

from .config import TabularModel


def mlp(d_in: int, units: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for u in units:
        layers += [nn.Linear(d_in, u), nn.ReLU(), nn.Dropout(dropout)]
        d_in = u
    return nn.Sequential(*layers)


class Tower(nn.Module):
    def __init__(self, d_in: int, cfg: TabularModel) -> None:
        super().__init__()
        self.body = mlp(d_in, cfg.tower, cfg.dropout)
        self.out = nn.Linear(cfg.tower[-1] if cfg.tower else d_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(-1)


class FieldEmbedding(nn.Module):
    """One table per field; the row's input x is their concatenation ([B, F * field_dim])."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(c, dim) for c in cardinalities)
        self.d_out = len(cardinalities) * dim

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return torch.cat([t(fields[:, i]) for i, t in enumerate(self.tables)], -1)


class MultiTask(nn.Module):
    """A model serving `tasks`, reading `fields` through `embedding`. `epochs_started` counts training
    epochs in the model's own state, so a resumed run schedules what depends on it exactly."""

    tasks: list[str]
    embedding: FieldEmbedding
    epochs_started: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))


class SharedBottom(MultiTask):
    def __init__(self, cards: list[int], cfg: TabularModel, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.embedding = FieldEmbedding(cards, cfg.field_dim)
        self.bottom = mlp(self.embedding.d_out, cfg.expert, cfg.dropout)
        self.towers = nn.ModuleDict({t: Tower(cfg.expert[-1], cfg) for t in tasks})

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.bottom(self.embedding(fields))
        return {t: self.towers[t](h) for t in self.tasks}


class SingleTask(SharedBottom):
    """One task alone: embeddings, an expert-sized MLP and a tower, all its own."""

    def __init__(self, cards: list[int], cfg: TabularModel, task: str) -> None:
        super().__init__(cards, cfg, [task])


class MMoE(MultiTask):
    def __init__(self, cards: list[int], cfg: TabularModel, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.embedding = FieldEmbedding(cards, cfg.field_dim)
        d_in, k = self.embedding.d_out, cfg.mmoe_experts
        self.experts = nn.ModuleList(mlp(d_in, cfg.expert, cfg.dropout) for _ in range(k))
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, k) for t in tasks})
        self.towers = nn.ModuleDict({t: Tower(cfg.expert[-1], cfg) for t in tasks})

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([e(x) for e in self.experts], 1)  # [B, k, d]

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embedding(fields)
        e = self.expert_outputs(x)
        out = {}
        for t in self.tasks:
            w = torch.softmax(self.gates[t](x), -1)
            out[t] = self.towers[t]((w.unsqueeze(-1) * e).sum(1))
        return out


class PLELevel(nn.Module):
    """One extraction level: a shared expert, one specific expert and gate per task, and (below the
    top level) a gate that mixes every expert into the next level's shared input."""

    def __init__(self, d_in: int, units: list[int], dropout: float, tasks: list[str], top: bool) -> None:
        super().__init__()
        self.shared = mlp(d_in, units, dropout)
        self.specific = nn.ModuleDict({t: mlp(d_in, units, dropout) for t in tasks})
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, 2) for t in tasks})
        self.shared_gate = None if top else nn.Linear(d_in, 1 + len(tasks))

    def forward(self, shared_in: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        shared = self.shared(shared_in)
        spec = {t: self.specific[t](x) for t, x in inputs.items()}
        outs = {}
        for t, x in inputs.items():
            w = torch.softmax(self.gates[t](x), -1)
            outs[t] = w[:, :1] * spec[t] + w[:, 1:] * shared
        if self.shared_gate is not None:
            w = torch.softmax(self.shared_gate(shared_in), -1)
            pool = torch.stack([shared, *spec.values()], 1)
            shared_in = (w.unsqueeze(-1) * pool).sum(1)
        return shared_in, outs


class PLE(MultiTask):
    """Progressive layered extraction (Tang et al., RecSys 2020) with one shared and one specific expert
    per task at every level, as the MPT-Rec authors configure it (two levels, experts of one layer)."""

    def __init__(self, cards: list[int], cfg: TabularModel, tasks: list[str], levels: int = 2) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.embedding = FieldEmbedding(cards, cfg.field_dim)
        units = cfg.expert[:1]  # one layer per expert (the authors: (256,) on Census)
        dims = [self.embedding.d_out] + [units[-1]] * levels
        self.levels = nn.ModuleList(
            PLELevel(dims[k], units, cfg.dropout, tasks, top=k == levels - 1) for k in range(levels)
        )
        self.towers = nn.ModuleDict({t: Tower(units[-1], cfg) for t in tasks})

    def first_shared(self, x: torch.Tensor) -> torch.Tensor:
        return cast(PLELevel, self.levels[0]).shared(x)

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embedding(fields)
        shared_in, inputs = x, {t: x for t in self.tasks}
        for level in self.levels:
            shared_in, inputs = level(shared_in, inputs)
        return {t: self.towers[t](inputs[t]) for t in self.tasks}


M = TypeVar("M", bound=nn.Module)


def freeze(module: M) -> M:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class NewTaskOnFrozen(MultiTask):
    """A baseline's stage 2 ("X*" in the MPT-Rec paper): the stage-1 model frozen, new parts trained.

    Shared-Bottom*: a new tower on the frozen bottom. MMoE*: a new gate and tower over the frozen
    experts. PLE*: the frozen embeddings and the first level's shared expert; a new specific expert, gate
    and tower (from scratch; ours: one level where the authors' PLE_NewTask rebuilds every level)."""

    def __init__(self, base: MultiTask, cfg: TabularModel, task: str) -> None:
        super().__init__()
        self.tasks = [task]
        self.base = freeze(base)
        d_in = base.embedding.d_out
        if isinstance(base, MMoE):
            self.gate = nn.Linear(d_in, len(base.experts))
            self.tower = Tower(cfg.expert[-1], cfg)
        elif isinstance(base, PLE):
            self.specific = mlp(d_in, cfg.expert[:1], cfg.dropout)
            self.gate = nn.Linear(d_in, 2)
            self.tower = Tower(cfg.expert[0], cfg)
        else:
            self.tower = Tower(cfg.expert[-1], cfg)

    def train(self, mode: bool = True) -> NewTaskOnFrozen:
        super().train(mode)
        self.base.eval()  # frozen: its dropout stays off
        return self

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        base, task = self.base, self.tasks[0]
        with torch.no_grad():
            x = base.embedding(fields)
        if isinstance(base, MMoE):
            with torch.no_grad():
                e = base.expert_outputs(x)
            w = torch.softmax(self.gate(x), -1)
            return {task: self.tower((w.unsqueeze(-1) * e).sum(1))}
        if isinstance(base, PLE):
            with torch.no_grad():
                shared = base.first_shared(x)
            w = torch.softmax(self.gate(x), -1)
            return {task: self.tower(w[:, :1] * self.specific(x) + w[:, 1:] * shared)}
        with torch.no_grad():
            h = cast(SharedBottom, base).bottom(x)
        return {task: self.tower(h)}
