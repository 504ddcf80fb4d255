"""The method contract: what the stream runner, predict and serve ask of every continual method.

Training. For each task in order the runner calls

    net = method.before_task(task)      # create heads / patches / prompts / copies; return the TaskNet
    ... the engine trains net.params on the task's objective ...
    net = method.next_phase(task, evaluate)   # optional further phases (Conure retrains after pruning)
    method.after_task(task)             # freeze, prune, snapshot: whatever keeps the task
    method.task_net(j)                  # for every learned task j: a network serving j now

`task_net(j)` never changes shared state: the task's own parameters and masks travel with the call
(`backbones.View`), so any number of tasks can be evaluated at once from one backbone, from any
number of threads. `module()` holds every weight the method owns (one checkpoint resumes it), and
`extra_state()` / `load_extra_state()` its non-tensor bookkeeping.

Storage, as PEFT lays it out. A run holds one base (`base_tensors()`: the shared backbone, plus what a
method keeps once per run, such as Conure's uint8 owner table) and per task an adapter
(`export(task)`: only what the task adds: a head, patches, prompts, or a whole model for the
methods that keep one per task). `base_reads(base, config)` names the part of the base a task's
adapter reads; the adapter records its fingerprint, so a base that changed under it is refused, and
a task learned later (which may change other parts of the base) leaves it valid. Inference rebuilds a
task with the class method `load_adapter(base, config, tensors)`; nothing outside the method knows
what its tensors mean.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import nn

from ..backbones import Backbone, View, build_backbone
from ..config import BackboneConfig, MethodSettings, StreamConfig, TrainConfig
from ..data.stream import Stream
from ..device import resolve_device
from ..heads import ItemHead, next_item_head
from ..objectives import new_head, objective_class
from ..tasknet import SequenceEncoder, TaskNet
from .registry import METHODS

ADAPTER_FORMAT = 1


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str
    index: int  # position in the learning order (0 = the first task, T1)


@dataclass
class LoadedBase:
    """A run's base as inference holds it: the backbone (built once, eval mode, on its device), every
    tensor of base.safetensors (the backbone's under `backbone.`, a method's extras under other
    prefixes), and base.json."""

    backbone: Backbone
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class Method(ABC):
    name: ClassVar[str]
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    # Phase metrics the report shows as extra rows (key in phase_metrics -> label), e.g. Conure-.
    report_phases: ClassVar[dict[str, str]] = {}
    # A run of this method is the reference of forward transfer (a fresh model per task: SinMo).
    fwt_reference: ClassVar[bool] = False

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if getattr(cls, "name", None):
            METHODS[cls.name] = cls

    def __init__(self, cfg: StreamConfig, stream: Stream) -> None:
        self.cfg, self.stream = cfg, stream
        m = cfg.method
        self.settings = m if isinstance(m, self.Settings) and m.name == self.name else self.Settings(name=self.name)
        self.device = resolve_device(cfg.train.device)
        self.heads = nn.ModuleDict()
        self.learned: list[str] = []
        self.index: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers for subclasses

    def fresh_backbone(self, index: int) -> Backbone:
        """A randomly initialised backbone, seeded by the task's position so reruns agree."""
        torch.manual_seed(self.cfg.train.seed * 1000 + index)
        return build_backbone(self.cfg.model, self.stream.n_items).to(self.device)

    def make_head(self, task: TaskInfo, backbone: Backbone) -> nn.Module:
        torch.manual_seed(self.cfg.train.seed * 1000 + 500 + task.index)
        if task.kind == "next_item":
            return next_item_head(backbone, self.stream.n_items).to(self.device)
        bias = self.cfg.train_for(task.index, task.name).head_bias
        return new_head(self.stream, task.name, self.cfg.model.d, bias).to(self.device)

    @staticmethod
    def copy_of(backbone: Backbone) -> Backbone:
        return copy.deepcopy(backbone)

    @staticmethod
    def freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    @staticmethod
    def net(encoder, head: nn.Module, *trainable: nn.Module, module: nn.Module, callbacks=()) -> TaskNet:
        params = [p for m in trainable for p in m.parameters() if p.requires_grad]
        return TaskNet(encoder, head, module, params, list(callbacks))

    # ------------------------------------------------------------------ the training contract

    @abstractmethod
    def before_task(self, task: TaskInfo) -> TaskNet:
        """Prepare the method for `task` and return the network that trains it."""

    def next_phase(self, task: TaskInfo, evaluate) -> TaskNet | None:
        """After a training phase of `task`: return the network for another phase (Conure retrains
        after pruning), or None when the task is learned. `evaluate(net)` gives test metrics."""
        return None

    def phase_train(self, task: TaskInfo, phase: int, train: TrainConfig) -> TrainConfig:
        """The training settings of `phase` (0 = the first) of `task`, given the task's budget `train`.
        A method with several phases divides the budget among them so that every method gets the same
        budget per task (Conure shares the epochs between training and retraining)."""
        return train

    def phase_metrics(self, task: str) -> dict:
        """Extra metrics measured between phases (Conure-: before pruning), recorded in the run."""
        return {}

    def after_task(self, task: TaskInfo) -> None:
        self.learned.append(task.name)
        self.index[task.name] = task.index

    @abstractmethod
    def task_net(self, task: str) -> TaskNet:
        """A network serving the learned task `task` now; it changes no shared state."""

    def eval_net(self, task: str) -> TaskNet:
        return self.task_net(task)

    @abstractmethod
    def module(self) -> nn.Module:
        """Every weight the method owns (checkpointed as one state dict)."""

    def backbones_stored(self) -> int:
        return 1

    def extra_state(self) -> dict:
        return {"learned": list(self.learned), "index": dict(self.index)}

    def load_extra_state(self, state: dict) -> None:
        self.learned = list(state.get("learned", []))
        self.index = dict(state.get("index", {t: i for i, t in enumerate(self.learned)}))

    # ------------------------------------------------------------------ the storage contract

    @abstractmethod
    def base_tensors(self) -> dict[str, torch.Tensor]:
        """What the run stores once: `backbone.*` (the shared backbone) and any per-run extras."""

    def export(self, task: str) -> dict[str, torch.Tensor]:
        """What `task` adds to the base (default: its head)."""
        return prefixed("head", self.heads[task])

    @classmethod
    def base_reads(cls, base: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """The part of the base that the adapter described by `config` computes with (its fingerprint is
        recorded in the adapter). Default: the whole backbone."""
        return {k: v for k, v in base.items() if k.startswith("backbone.")}

    # ------------------------------------------------------------------ inference from stored files

    @classmethod
    def load_adapter(
        cls, base: LoadedBase, config: dict, tensors: dict[str, torch.Tensor], device: torch.device
    ) -> TaskNet:
        """A serving network for one task, from the loaded base and the task's adapter."""
        backbone = base.backbone
        own = strip("backbone", tensors)
        if own:  # a method that keeps a whole model per task
            backbone = build_backbone(BackboneConfig.model_validate(config["model"]), config["n_items"])
            backbone.load_state_dict(own)
            backbone = backbone.to(device).eval()
        head = cls.load_head(config, tensors, backbone, device)
        view = cls.serving_view(base, config, tensors, device)
        return TaskNet(SequenceEncoder(backbone, view), head, nn.ModuleDict({"head": head}), [])

    @classmethod
    def serving_view(
        cls, base: LoadedBase, config: dict, tensors: dict[str, torch.Tensor], device: torch.device
    ) -> View | None:
        return None

    @classmethod
    def universal(cls, configs: list[dict]) -> tuple[list[str], str] | None:
        """A universal user representation, where the method has one: the tasks whose user vectors make
        it (from the adapters' configs, in learning order) and how they combine ("concat" or "mean").
        None: this method has none."""
        return None

    @staticmethod
    def load_head(config: dict, tensors: dict[str, torch.Tensor], backbone: Backbone, device) -> nn.Module:
        sd = strip("head", tensors)
        d, n_items = backbone.d, config.get("n_targets", config["n_items"])
        if config["kind"] in ("next_item", "item_rec"):
            head: nn.Module = ItemHead(d, n_items, tied=backbone.item_embedding if "weight" not in sd else None)
        else:
            head = objective_class(config["kind"]).new_head(config.get("classes"), d, n_items)
        head.load_state_dict(sd)
        return head.to(device).eval()


class SharedBackbone(Method):
    """Methods with one backbone that T1 trains and every later task reads (seqft, FineSmax, PeterRec,
    Conure)."""

    backbone: Backbone

    def learn_first_task(self, task: TaskInfo) -> TaskNet:
        """T1: a fresh backbone and its head, all trainable."""
        self.backbone = self.fresh_backbone(0)
        return self.train_everything(task)

    def train_everything(self, task: TaskInfo) -> TaskNet:
        """A new head for `task`; the shared backbone and the head both train."""
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        return self.net(
            SequenceEncoder(self.backbone),
            head,
            self.backbone,
            head,
            module=nn.ModuleDict({"backbone": self.backbone, "head": head}),
        )

    def task_net(self, task: str) -> TaskNet:
        return self.net(SequenceEncoder(self.backbone), self.heads[task], module=self.module())

    def frozen_embedding_head(self, task: TaskInfo, item_head: str, tied_bias: str) -> nn.Module:
        """A later task's head over a frozen backbone (PCL, MPT-Rec): an item task scores against the
        frozen item embeddings with a bias of its own (`item_head: tied`, so an item the task never saw
        as a target can still rank), or learns its own item matrix (`softmax`, and always for a task
        with its own catalogue, which has no input embeddings to tie to); a profile task, a linear head.
        The tied head's bias starts at the log frequency of the task's training targets
        (`tied_bias: log_prior`) or as train.head_bias says (`train`)."""
        own = task.kind == "item_rec" and self.stream.task(task.name).items is not None
        if task.kind != "item_rec" or item_head != "tied" or own:
            return self.make_head(task, self.backbone)
        bias = "log_prior" if tied_bias == "log_prior" else self.cfg.train_for(task.index, task.name).head_bias
        start = cast(ItemHead, new_head(self.stream, task.name, self.backbone.d, bias))  # for its bias only
        tied = ItemHead(self.backbone.d, self.stream.n_items, tied=self.backbone.item_embedding)
        with torch.no_grad():
            tied.bias.copy_(start.bias)
        return tied.to(self.device)

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads})

    def base_tensors(self) -> dict[str, torch.Tensor]:
        return prefixed("backbone", self.backbone)


class FrozenAfterFirst(SharedBackbone):
    """Methods that freeze the backbone and the item embeddings once T1 is learned and tune small task
    parts afterwards (PCL's prompts, MPT-Rec's experts), at their own learning rate `method.lr` (None:
    the task's train.lr)."""

    def phase_train(self, task: TaskInfo, phase: int, train: TrainConfig) -> TrainConfig:
        lr = getattr(self.settings, "lr", None)
        return train if task.index == 0 or lr is None else train.model_copy(update={"lr": lr})

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        if task.index == 0:
            self.freeze(self.backbone)  # and with it the item embeddings


class BackbonePerTask(Method):
    """Methods that keep one backbone per task (SinMo, STL, MTL); a finished task's model is frozen.
    The first task's backbone is the run's base; every later task's adapter holds its own model."""

    def __init__(self, cfg: StreamConfig, stream: Stream) -> None:
        super().__init__(cfg, stream)
        self.backbones = nn.ModuleDict()

    def own_net(self, task: TaskInfo, backbone: Backbone, **extra: nn.Module) -> TaskNet:
        """Register `backbone` as the task's own and return it, its new head and `extra` modules, all trainable."""
        self.backbones[task.name] = backbone
        head = self.heads[task.name] = self.make_head(task, backbone)
        module = nn.ModuleDict({"backbone": backbone, "head": head, **extra})
        return self.net(SequenceEncoder(backbone), head, module, module=module)

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbones[task.name])

    def task_net(self, task: str) -> TaskNet:
        return self.net(SequenceEncoder(cast(Backbone, self.backbones[task])), self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads})

    def base_tensors(self) -> dict[str, torch.Tensor]:
        return prefixed("backbone", self.backbones[self.learned[0]])

    def export(self, task: str) -> dict[str, torch.Tensor]:
        head = prefixed("head", self.heads[task])
        return head if task == self.learned[0] else {**prefixed("backbone", self.backbones[task]), **head}

    @classmethod
    def base_reads(cls, base: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        return super().base_reads(base, config) if config["index"] == 0 else {}  # a later task reads its own model

    def backbones_stored(self) -> int:
        return len(self.backbones)


def build_method(name: str, cfg: StreamConfig, stream: Stream) -> Method:
    from .registry import method_class

    return method_class(name)(cfg, stream)
