"""The method contract: what the stream runner asks of every continual-learning method.

The runner never names a method. For each task in order it calls

    net = method.before_task(task)      # create heads / patches / prompts / copies; return the TaskNet
    ... the engine trains net.params on the task's objective ...
    method.after_task(task)             # freeze, prune, snapshot: whatever keeps the task
    method.eval_net(j)                  # for every learned task j: the network that serves j now

and saves `method.task_state(task)` as that task's artifact, with `method.added_bytes(task)`.
`module()` holds every weight the method owns, so one checkpoint resumes it; `extra_state()` /
`load_extra_state()` carry any non-tensor bookkeeping (a Conure stage, an owner table's meta).

The contract is wide enough for what is coming: per-weight ownership masks (Conure) live in the
module as buffers and are applied inside `eval_net`'s encode; patch modules (PeterRec) hang on the
backbone's `patch` hook; prompts (PCL, MPT-Rec) are passed as `encode(items, prompt=...)`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..backbones import Backbone, build_backbone
from ..config import StreamConfig
from ..data.stream import Stream
from ..errors import ConfigError
from ..heads import next_item_head
from ..objectives import TaskNet, new_head

METHODS: dict[str, type[Method]] = {}


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str
    index: int  # position in the learning order (0 = the first task, T1)


class Method(ABC):
    name: ClassVar[str]

    # How many backbones the method stores once the stream is learned (Conure's #Bb column).
    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if getattr(cls, "name", None):
            METHODS[cls.name] = cls

    def __init__(self, cfg: StreamConfig, stream: Stream) -> None:
        self.cfg, self.stream = cfg, stream
        self.heads = nn.ModuleDict()
        self.learned: list[str] = []

    # ------------------------------------------------------------------ helpers for subclasses

    def fresh_backbone(self, index: int) -> Backbone:
        """A randomly initialised backbone, seeded by the task's position so reruns agree."""
        torch.manual_seed(self.cfg.train.seed * 1000 + index)
        return build_backbone(self.cfg.model, self.stream.n_items)

    def make_head(self, task: TaskInfo, backbone: Backbone) -> nn.Module:
        torch.manual_seed(self.cfg.train.seed * 1000 + 500 + task.index)
        if task.kind == "next_item":
            return next_item_head(backbone, self.stream.n_items)
        return new_head(self.stream, task.name, self.cfg.model.d)

    @staticmethod
    def copy_of(backbone: Backbone) -> Backbone:
        return copy.deepcopy(backbone)

    @staticmethod
    def freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    @staticmethod
    def net(encode, head: nn.Module, *trainable: nn.Module, module: nn.Module, extra_loss=None) -> TaskNet:
        params = [p for m in trainable for p in m.parameters() if p.requires_grad]
        return TaskNet(encode, head, module, params, extra_loss)

    # ------------------------------------------------------------------ the contract

    @abstractmethod
    def before_task(self, task: TaskInfo) -> TaskNet:
        """Prepare the method for `task` and return the network that trains it."""

    def next_phase(self, task: TaskInfo, evaluate) -> TaskNet | None:
        """After a training phase of `task`: return the network for another phase (Conure retrains
        after pruning), or None when the task is learned. `evaluate(net)` gives test metrics."""
        return None

    def phase_metrics(self, task: str) -> dict:
        """Extra metrics measured between phases (Conure-: before pruning), recorded in the run."""
        return {}

    def after_task(self, task: TaskInfo) -> None:
        self.learned.append(task.name)

    @abstractmethod
    def eval_net(self, task: str) -> TaskNet:
        """The network that serves the learned task `task` now."""

    @abstractmethod
    def module(self) -> nn.Module:
        """Every weight the method owns (checkpointed as one state dict)."""

    @abstractmethod
    def task_state(self, task: str) -> dict[str, torch.Tensor]:
        """The tensors that serve `task` (its artifact)."""

    def added_bytes(self, task: str) -> int:
        """Bytes this task added to what must be stored (default: its whole task state)."""
        return sum(t.numel() * t.element_size() for t in self.task_state(task).values())

    def backbones_stored(self) -> int:
        return 1

    def backbone_fingerprint(self, task: str) -> str:
        """sha256 of the backbone weights that serve `task` (its artifact refuses any other base)."""
        from ..artifacts import state_fingerprint

        return state_fingerprint(self.serving_backbone(task).state_dict())

    def serving_backbone(self, task: str) -> Backbone:
        """The backbone whose weights serve `task` (shared, or the task's own copy)."""
        return self.backbones[task] if isinstance(self, BackbonePerTask) else self.backbone

    def extra_state(self) -> dict:
        return {"learned": list(self.learned)}

    def load_extra_state(self, state: dict) -> None:
        self.learned = list(state.get("learned", []))


def _tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


class SharedBackbone(Method):
    """Methods with one backbone that T1 trains and every later task reads (seqft, FineSmax, PeterRec)."""

    backbone: Backbone

    def learn_first_task(self, task: TaskInfo) -> TaskNet:
        """T1: a fresh backbone and its head, all trainable."""
        self.backbone = self.fresh_backbone(0)
        return self.train_everything(task)

    def train_everything(self, task: TaskInfo) -> TaskNet:
        """A new head for `task`; the shared backbone and the head both train."""
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        return self.net(
            self.backbone.encode,
            head,
            self.backbone,
            head,
            module=nn.ModuleDict({"backbone": self.backbone, "head": head}),
        )

    def encoder(self, task: str):
        return self.backbone.encode

    def eval_net(self, task: str) -> TaskNet:
        return self.net(self.encoder(task), self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads})

    def task_state(self, task: str) -> dict[str, torch.Tensor]:
        sd = _tensors("head", self.heads[task])
        if task == self.learned[0]:  # the shared backbone is stored once, with the first task
            sd.update(_tensors("backbone", self.backbone))
        return sd


class BackbonePerTask(Method):
    """Methods that keep one backbone per task (SinMo, STL, MTL); a finished task's model is frozen."""

    def __init__(self, cfg: StreamConfig, stream: Stream) -> None:
        super().__init__(cfg, stream)
        self.backbones = nn.ModuleDict()

    def own_net(self, task: TaskInfo, backbone: Backbone, **extra: nn.Module) -> TaskNet:
        """Register `backbone` as the task's own and return it, its new head and `extra` modules, all trainable."""
        self.backbones[task.name] = backbone
        head = self.heads[task.name] = self.make_head(task, backbone)
        module = nn.ModuleDict({"backbone": backbone, "head": head, **extra})
        return self.net(backbone.encode, head, module, module=module)

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbones[task.name])

    def eval_net(self, task: str) -> TaskNet:
        return self.net(self.backbones[task].encode, self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads})

    def task_state(self, task: str) -> dict[str, torch.Tensor]:
        return {**_tensors("backbone", self.backbones[task]), **_tensors("head", self.heads[task])}

    def backbones_stored(self) -> int:
        return len(self.backbones)


def build_method(name: str, cfg: StreamConfig, stream: Stream) -> Method:
    from . import conure, finesmax, mtl, peterrec, seqft, sinmo, stl  # noqa: F401 - registration

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}' (available: {', '.join(sorted(METHODS))})")
    return METHODS[name](cfg, stream)
