"""Conure (Yuan et al., SIGIR 2021): prune, retrain, freeze, and never forget.

Every prunable weight (NextItNet's convolution kernels; SASRec's attention and feed-forward matrices)
has an owner, one byte per weight: 0 = free, k = the k-th task of the stream. Each task goes through

    train    the task trains the free weights (all of them for T1) and reads, frozen, the weights of
             the earlier tasks: Z' = Z * (1 - G) + stop_gradient(Z * G)   (equation 4)
    prune    within each weight tensor, the task's smallest-magnitude weights (ratio per task) are
             freed: hidden from the task from now on, they are the free space of the next task, which
             starts from their values
    retrain  the task's remaining weights train again and recover its accuracy
    frozen   nothing of the task moves any more

as an explicit state machine that refuses any other order. Task t computes with the weights owned by
tasks 1..t only, passed with each call as its `View` (masked copies; the shared backbone is never
switched to a task), so an earlier task's outputs are bit-identical after every later task: gradients
never reach frozen weights (stop-gradient), and after every optimizer step the weights that the
training task does not own are restored, so neither Adam's moments nor weight decay can move them.
Embeddings, layer norms and biases are trained by T1 and then frozen; `method.prune_embedding` puts
the item embedding matrix under the same mechanism (the paper's Table 5). "Conure-" is the task's test
metric after training, before pruning and retraining (recorded in the run as a phase metric).

Storage: the run's base is the one backbone that holds every task's weights plus its owner table
(uint8, stored once, `owner.<weight name>`); a task's adapter is its head. Its fingerprint covers only
what it reads (the weights with owner <= its index), so later tasks leave it valid.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, cast

import torch
from pydantic import Field, field_validator
from torch import nn

from ..backbones import Backbone, View
from ..backbones.nextitnet import CausalConv1d
from ..config import MethodSettings
from ..heads import ItemHead
from ..tasknet import Callback, SequenceEncoder
from .base import LoadedBase, SharedBackbone, TaskInfo, prefixed, strip


class ConureSettings(MethodSettings):
    # Fraction of each task's weights pruned (freed for later tasks), per task in learning order; the
    # last value repeats. The paper used 70/80/70% on ML.
    prune: list[float] = Field(default_factory=lambda: [0.7, 0.8, 0.7])
    # The paper's Table 5: also prune and retrain the item embedding matrix, with its own ratios
    # (the paper: 30/80/80%). Off by default: embeddings are trained by T1 and then frozen.
    prune_embedding: bool = False
    embedding_prune: list[float] = Field(default_factory=lambda: [0.3, 0.8, 0.8])
    # Ratios by task name, overriding the positional lists above: a task keeps its ratio whatever its
    # position in the order (the paper's ratios belong to tasks; by position, T3 learned second would
    # be pruned at T2's ratio).
    prune_by_task: dict[str, float] = Field(default_factory=dict)
    # The task's budget (train.epochs, or finetune.epochs after T1) is shared by the two phases, so Conure
    # trains no more than a baseline does: training gets the epochs retraining does not
    # (`retrain_share` of them, at least one each). "per_phase" gives each phase the whole budget (the
    # paper does not say; our first version did this, which doubles Conure's training).
    budget: Literal["shared", "per_phase"] = "shared"
    retrain_share: float = Field(default=0.5, gt=0, lt=1)

    @field_validator("prune", "embedding_prune")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 <= r < 1 for r in v):
            raise ValueError(f"prune ratios must be in [0, 1), got {v}")
        return v

    @field_validator("prune_by_task")
    @classmethod
    def _named(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {t: r for t, r in v.items() if not 0 <= r < 1}
        if bad:
            raise ValueError(f"prune ratios must be in [0, 1), got {bad}")
        return v


class Stage(str, Enum):
    TRAIN = "train"
    PRUNE = "prune"
    RETRAIN = "retrain"
    FROZEN = "frozen"


_ALLOWED = {
    None: {Stage.TRAIN},
    Stage.TRAIN: {Stage.PRUNE},
    Stage.PRUNE: {Stage.RETRAIN},
    Stage.RETRAIN: {Stage.FROZEN},
    Stage.FROZEN: set(),
}


class IllegalTransition(RuntimeError):
    pass


class Stages:
    """Per-task stage, advanced only along train -> prune -> retrain -> frozen."""

    def __init__(self) -> None:
        self.of: dict[str, Stage] = {}

    def advance(self, task: str, to: Stage) -> None:
        cur = self.of.get(task)
        if to not in _ALLOWED[cur]:
            raise IllegalTransition(
                f"task {task}: {cur.value if cur else 'new'} -> {to.value} is not allowed "
                "(train -> prune -> retrain -> frozen)"
            )
        self.of[task] = to


def visible(owner: torch.Tensor, view: int) -> torch.Tensor:
    """The weights task `view` (1-based) computes with: those of tasks 1..view."""
    return (owner >= 1) & (owner <= view)


class OwnerTable(nn.Module):
    """One uint8 owner per prunable weight, as buffers (checkpointed with the method)."""

    def __init__(self, shapes: dict[str, torch.Size], device) -> None:
        super().__init__()
        self.names = list(shapes)
        for n, shape in shapes.items():  # T1 owns everything at first
            self.register_buffer(n.replace(".", "__"), torch.ones(shape, dtype=torch.uint8, device=device))

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace(".", "__"))


class RestoreOthers(Callback):
    """After every step, put back the weights the training task does not own: Adam's moments and
    weight decay would otherwise move them although they receive no gradient."""

    def __init__(self, params: list[nn.Parameter], mine: list[torch.Tensor]) -> None:
        self.params, self.mine = params, mine
        self.snapshot = [p.detach().clone() for p in params]

    @torch.no_grad()
    def after_step(self) -> None:
        for p, s, m in zip(self.params, self.snapshot, self.mine):
            p.copy_(torch.where(m, p, s))


class Conure(SharedBackbone):
    name = "conure"
    Settings = ConureSettings
    settings: ConureSettings
    report_phases = {"conure_minus": "before pruning"}

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.stages = Stages()
        self._conure_minus: dict[str, dict] = {}
        self._pruned: dict[str, dict] = {}  # test metrics right after pruning, before retraining (Fig. 3)

    # ------------------------------------------------------------------ weights and their owners

    @staticmethod
    def prunable(backbone: Backbone, prune_embedding: bool) -> dict[str, nn.Parameter]:
        kinds = (CausalConv1d, nn.Linear)
        mods: list[nn.Module] = [m for m in backbone.modules() if isinstance(m, kinds) and hasattr(m, "weight")]
        if prune_embedding:
            mods.append(backbone.item_embedding)
        return {cast(str, m.path) + ".weight": cast(nn.Parameter, m.weight) for m in mods}

    def _weights(self) -> dict[str, nn.Parameter]:
        return self.prunable(self.backbone, self.settings.prune_embedding)

    def _view(self, k: int) -> View:
        """Task k's weights, read-only (serving and evaluation)."""
        return View(weights={n: w * visible(self.owners[n], k) for n, w in self._weights().items()})

    def _training_view(self, k: int) -> View:
        """Task k's weights while it trains: its own receive gradients, earlier tasks' are read through a
        stop-gradient, later tasks' (none yet) and free ones are hidden."""
        return View(
            weights={
                n: torch.where(self.owners[n] == k, w, w.detach()) * visible(self.owners[n], k)
                for n, w in self._weights().items()
            }
        )

    def _head(self, task: str, view: View) -> nn.Module:
        head = self.heads[task]
        emb = "item_embedding.weight"
        if isinstance(head, ItemHead) and head.tied and view.weights and emb in view.weights:
            return head.reading(view.weights[emb])  # a tied head scores with the task's embedding view
        return head

    def task_net(self, task: str):
        view = self._view(self.index[task] + 1)
        return self.net(SequenceEncoder(self.backbone, view), self._head(task, view), module=self.module())

    def _training_net(self, task: TaskInfo):
        k = task.index + 1
        weights = self._weights()
        for p in weights.values():
            p.requires_grad_(True)
        restore = RestoreOthers(list(weights.values()), [self.owners[n] == k for n in weights])
        encoder = SequenceEncoder(self.backbone, lambda: self._training_view(k))
        head = self.heads[task.name]
        extra = [self.backbone] if task.index == 0 else []  # T1 also trains embeddings, norms, biases
        net = self.net(
            encoder,
            head,
            head,
            *extra,
            module=nn.ModuleDict({"backbone": self.backbone, "head": head}),
            callbacks=[restore],
        )
        seen = {id(p) for p in net.params}
        net.params += [p for p in weights.values() if id(p) not in seen]
        return net

    # ------------------------------------------------------------------ the stages

    def before_task(self, task: TaskInfo):
        self.stages.advance(task.name, Stage.TRAIN)
        self.index[task.name] = task.index
        if task.index == 0:
            self.backbone = self.fresh_backbone(0)
            self.owners = OwnerTable({n: w.shape for n, w in self._weights().items()}, self.device)
        else:
            for n in self.owners.names:  # the free space of the earlier tasks becomes this task's
                o = self.owners[n]
                o[o == 0] = task.index + 1
        self.heads[task.name] = self.make_head(task, self.backbone)
        return self._training_net(task)

    def phase_train(self, task: TaskInfo, phase: int, train):
        if self.settings.budget == "per_phase":
            return train
        retrain = min(train.epochs - 1, max(1, round(train.epochs * self.settings.retrain_share)))
        epochs = retrain if phase == 1 else train.epochs - retrain
        return train.model_copy(update={"epochs": max(1, epochs)})

    def next_phase(self, task: TaskInfo, evaluate):
        stage = self.stages.of[task.name]
        if stage == Stage.TRAIN:
            self._conure_minus[task.name] = evaluate(self.task_net(task.name))
            self.stages.advance(task.name, Stage.PRUNE)
            self.prune(task)
            self._pruned[task.name] = evaluate(self.task_net(task.name))
            self.stages.advance(task.name, Stage.RETRAIN)
            return self._training_net(task)
        if stage == Stage.RETRAIN:
            self.stages.advance(task.name, Stage.FROZEN)
        return None

    @torch.no_grad()
    def prune(self, task: TaskInfo) -> None:
        """Free the task's smallest-magnitude weights, ranked within each weight tensor."""
        if self.stages.of[task.name] != Stage.PRUNE:
            raise IllegalTransition(f"task {task.name}: prune only in the prune stage")
        k = task.index + 1
        s = self.settings
        for n, w in self._weights().items():
            embedding = n == "item_embedding.weight"
            ratios = s.embedding_prune if embedding else s.prune
            ratio = ratios[min(task.index, len(ratios) - 1)]
            if not embedding and task.name in s.prune_by_task:
                ratio = s.prune_by_task[task.name]
            owner = self.owners[n]
            mine = owner == k
            if embedding:
                mine[0] = False  # the padding row stays zero and is never handed to another task
            n_mine = int(mine.sum())
            drop = int(ratio * n_mine)
            if drop == 0:
                continue
            threshold = w[mine].abs().kthvalue(drop).values
            cut = mine & (w.abs() <= threshold)
            # Freed, not zeroed: the weight keeps its value, hidden from this task by the mask, and the
            # next task starts its free weights from it ("we initialize Conure by using both condensed
            # and pruned parameters of T1", section 4, Stage 4; the authors' code keeps them too).
            owner[cut] = 0

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbone)

    def phase_metrics(self, task: str) -> dict:
        out = {}
        if task in self._conure_minus:
            out["conure_minus"] = self._conure_minus[task]
        if task in self._pruned:
            out["pruned_before_retrain"] = self._pruned[task]
        return out

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads, "owners": self.owners})

    # ------------------------------------------------------------------ storage

    def owner_table(self) -> dict[str, torch.Tensor]:
        return {f"owner.{n}": self.owners[n] for n in self.owners.names}

    def base_tensors(self) -> dict[str, torch.Tensor]:
        return {**prefixed("backbone", self.backbone), **self.owner_table()}

    @classmethod
    def base_reads(cls, base: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        k = config["index"] + 1
        out = {}
        for key, v in base.items():
            if not key.startswith("backbone."):
                continue
            owner = base.get("owner." + key[len("backbone.") :])
            if owner is None:
                out[key] = v  # not prunable: trained by T1, then frozen
            else:
                seen = visible(owner, k)
                # where(), not v * seen: a hidden negative weight would leave -0.0, whose bytes differ
                out[key] = torch.where(seen, v, torch.zeros((), dtype=v.dtype, device=v.device))
                out["visible." + key] = seen.to(torch.uint8)
        return out

    @classmethod
    def serving_view(cls, base: LoadedBase, config: dict, tensors: dict, device) -> View | None:
        k = config["index"] + 1
        owners = strip("owner", base.tensors)
        weights = dict(base.backbone.named_parameters())
        return View(weights={n: weights[n].detach() * visible(o.to(device), k) for n, o in owners.items()})

    @classmethod
    def load_adapter(cls, base: LoadedBase, config: dict, tensors: dict, device):
        net = super().load_adapter(base, config, tensors, device)
        view = net.encoder.view()
        emb = "item_embedding.weight"
        if isinstance(net.head, ItemHead) and net.head.tied and view is not None and emb in view.weights:
            net.head = net.head.reading(view.weights[emb])
        return net

    def extra_state(self) -> dict:
        return {
            **super().extra_state(),
            "stages": {t: s.value for t, s in self.stages.of.items()},
            "conure_minus": self._conure_minus,
            "pruned": self._pruned,
        }

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.stages.of = {t: Stage(s) for t, s in state.get("stages", {}).items()}
        self._conure_minus = dict(state.get("conure_minus", {}))
        self._pruned = dict(state.get("pruned", {}))
