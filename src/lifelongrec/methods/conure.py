"""Conure (Yuan et al., SIGIR 2021): prune, retrain, freeze, and never forget.

Every prunable weight (NextItNet's convolution kernels; SASRec's attention and feed-forward matrices)
has an owner, one byte per weight: 0 = free, k = the k-th task of the stream. Each task goes through

    train    the task trains the free weights (all of them for T1) and reads, frozen, the weights of
             the earlier tasks: Z' = Z * (1 - G) + stop_gradient(Z * G)   (equation 4)
    prune    within each weight tensor, the task's smallest-magnitude weights (ratio per task) are set
             to zero and freed: they are the free space of the next task
    retrain  the task's remaining weights train again and recover its accuracy
    frozen   nothing of the task moves any more

as an explicit state machine that refuses any other order. Inference for task t uses only the weights
owned by tasks <= t, so an earlier task's outputs are bit-identical after every later task: gradients
never reach frozen weights (stop-gradient), and after every optimizer step the weights that the
training task does not own are restored, so neither Adam's moments nor weight decay can move them.
Embeddings, layer norms and biases are trained by T1 and then frozen; `method.conure_prune_embedding`
puts the item embedding matrix under the same mechanism (the paper's Table 5). "Conure-" is the task's test
metric after training, before pruning and retraining (recorded in the run as a phase metric).
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..backbones.nextitnet import CausalConv1d
from .base import SharedBackbone, TaskInfo, _tensors


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


class OwnedWeight(nn.Module):
    """Parametrization of a prunable weight: hides weights owned by later tasks and stops gradients
    to weights owned by earlier ones."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.register_buffer("owner", torch.ones(shape, dtype=torch.uint8))  # T1 owns everything at first
        self.view = 1  # weights with owner in 1..view take part in the forward pass
        self.train_owner = 0  # weights with this owner receive gradients (0: none)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        visible = (self.owner >= 1) & (self.owner <= self.view)
        if self.train_owner:
            w = torch.where(self.owner == self.train_owner, w, w.detach())
        return w * visible


class Conure(SharedBackbone):
    name = "conure"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.stages = Stages()
        self.index: dict[str, int] = {}
        self._conure_minus: dict[str, dict] = {}
        self._pruned: dict[str, dict] = {}  # test metrics right after pruning, before retraining (Fig. 3)

    # ------------------------------------------------------------------ weights and their owners

    def _prunable(self) -> list[nn.Module]:
        kinds = (CausalConv1d, nn.Linear)
        mods = [m for m in self.backbone.modules() if isinstance(m, kinds) and hasattr(m, "weight")]
        if self.cfg.method.conure_prune_embedding:
            mods.append(self.backbone.item_embedding)
        return mods

    def _owned(self) -> list[tuple[nn.Module, OwnedWeight]]:
        return [(m, m.parametrizations.weight[0]) for m in self._prunable()]

    def _set_view(self, view: int, train_owner: int = 0) -> None:
        for _, ow in self._owned():
            ow.view, ow.train_owner = view, train_owner

    def encoder(self, task: str):
        view = self.index[task] + 1

        def encode(items, prompt=None):
            self._set_view(view)
            return self.backbone.encode(items, prompt)

        return encode

    def _training_net(self, task: TaskInfo):
        k = task.index + 1
        owned = self._owned()
        params = [m.parametrizations.weight.original for m, _ in owned]
        for p in params:
            p.requires_grad_(True)
        snapshot = [p.detach().clone() for p in params]
        mine = [ow.owner == k for _, ow in owned]

        def encode(items, prompt=None):
            self._set_view(k, train_owner=k)
            return self.backbone.encode(items, prompt)

        @torch.no_grad()
        def restore_others() -> None:  # Adam moments and weight decay must not move what others own
            for p, s, m in zip(params, snapshot, mine):
                p.copy_(torch.where(m, p, s))

        head = self.heads[task.name]
        extra = [self.backbone] if task.index == 0 else []  # T1 also trains embeddings, norms, biases
        net = self.net(encode, head, head, *extra, module=nn.ModuleDict({"backbone": self.backbone, "head": head}))
        seen = {id(p) for p in net.params}
        net.params += [p for p in params if id(p) not in seen]
        net.after_step = restore_others
        return net

    # ------------------------------------------------------------------ the stages

    def before_task(self, task: TaskInfo):
        self.stages.advance(task.name, Stage.TRAIN)
        self.index[task.name] = task.index
        if task.index == 0:
            self.backbone = self.fresh_backbone(0)
            for m in self._prunable():
                parametrize.register_parametrization(m, "weight", OwnedWeight(m.weight.shape))
        else:
            for _, ow in self._owned():  # the free space of the earlier tasks becomes this task's
                ow.owner[ow.owner == 0] = task.index + 1
        self.heads[task.name] = self.make_head(task, self.backbone)
        return self._training_net(task)

    def next_phase(self, task: TaskInfo, evaluate):
        stage = self.stages.of[task.name]
        if stage == Stage.TRAIN:
            self._conure_minus[task.name] = evaluate(self.eval_net(task.name))
            self.stages.advance(task.name, Stage.PRUNE)
            self.prune(task)
            self._pruned[task.name] = evaluate(self.eval_net(task.name))
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
        for m, ow in self._owned():
            embedding = m is self.backbone.item_embedding
            ratios = self.cfg.method.conure_embedding_prune if embedding else self.cfg.method.conure_prune
            ratio = ratios[min(task.index, len(ratios) - 1)]
            w = m.parametrizations.weight.original
            mine = ow.owner == k
            if embedding:
                mine[0] = False  # the padding row stays zero and is never handed to another task
            n = int(mine.sum())
            drop = int(ratio * n)
            if drop == 0:
                continue
            threshold = w[mine].abs().kthvalue(drop).values
            cut = mine & (w.abs() <= threshold)
            ow.owner[cut] = 0
            w[cut] = 0.0

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbone)
        self._set_view(task.index + 1)

    def phase_metrics(self, task: str) -> dict:
        out = {}
        if task in self._conure_minus:
            out["conure_minus"] = self._conure_minus[task]
        if task in self._pruned:
            out["pruned_before_retrain"] = self._pruned[task]
        return out

    # ------------------------------------------------------------------ storage

    def owner_table(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.backbone.state_dict().items() if k.endswith(".owner")}

    def task_state(self, task: str):
        # The backbone as it serves `task` (weights of tasks <= it are final once it is learned).
        return {**_tensors("backbone", self.backbone), **_tensors("head", self.heads[task])}

    def added_bytes(self, task: str) -> int:
        head = sum(p.numel() * p.element_size() for p in self.heads[task].parameters())
        if task != self.learned[0]:
            return head  # its weights live in the shared backbone's free space; ownership is already counted
        backbone = sum(p.numel() * p.element_size() for p in self.backbone.parameters())
        return head + backbone + sum(t.numel() for t in self.owner_table().values())

    def extra_state(self) -> dict:
        return {
            **super().extra_state(),
            "stages": {t: s.value for t, s in self.stages.of.items()},
            "index": self.index,
            "conure_minus": self._conure_minus,
            "pruned": self._pruned,
        }

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.stages.of = {t: Stage(s) for t, s in state.get("stages", {}).items()}
        self.index = dict(state.get("index", {}))
        self._conure_minus = dict(state.get("conure_minus", {}))
        self._pruned = dict(state.get("pruned", {}))
