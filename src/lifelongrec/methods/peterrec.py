"""PeterRec (Yuan et al., SIGIR 2020): the T1 backbone is frozen; each later task learns small
model patches inside every residual block, plus its own head.

A patch is a bottleneck residual module, x -> x + W_up relu(W_down x), with W_up zero-initialised so
the patched network starts exactly as the pretrained one. Serial insertion patches a block's
residual-branch output; parallel insertion adds a patch of the block input alongside the branch.
Only patches and heads are stored per task (the task's adapter), so one backbone serves every task,
with no forgetting. A task's patches travel with its calls (`View.patches`), never set on the backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..backbones import View
from ..config import MethodSettings
from ..tasknet import SequenceEncoder
from .base import LoadedBase, SharedBackbone, TaskInfo, prefixed, strip


class PeterRecSettings(MethodSettings):
    mode: Literal["serial", "parallel"] = "serial"
    bottleneck: int = Field(16, ge=1)  # patch width (PeterRec: a small fraction of d)
    # Where patches go: "per_block", one on each residual block's branch output (our first version), or
    # "per_conv", one after each of the block's two convolutions (SASRec: after attention and after the
    # feed-forward), as the reference code places them.
    placement: Literal["per_block", "per_conv"] = "per_conv"
    activation: Literal["relu", "gelu"] = "gelu"  # the reference code's bottleneck uses GELU
    dropout: bool = True  # apply the backbone's dropout rate to each patch's output


class Patch(nn.Module):
    """x -> x + W_up act(W_down x) on the patched site's output (serial) or its input (parallel)."""

    def __init__(self, d: int, k: int, mode: str, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.mode = mode
        self.down = nn.Linear(d, k)
        self.up = nn.Linear(k, d)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = y if self.mode == "serial" else x
        return y + self.drop(self.up(self.act(self.down(z))))


def _patches(d: int, blocks: int, s: PeterRecSettings, dropout: float) -> nn.ModuleDict:
    sites = (
        [str(i) for i in range(blocks)]
        if s.placement == "per_block"
        else [f"{i}_{k}" for i in range(blocks) for k in (0, 1)]
    )
    p = dropout if s.dropout else 0.0
    return nn.ModuleDict({site: Patch(d, s.bottleneck, s.mode, s.activation, p) for site in sites})


class PeterRec(SharedBackbone):
    name = "peterrec"
    Settings = PeterRecSettings
    settings: PeterRecSettings

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.patches = nn.ModuleDict()  # task -> ModuleDict(block index -> Patch)

    def _encoder(self, task: str) -> SequenceEncoder:
        if task not in self.patches:  # T1: the plain backbone
            return SequenceEncoder(self.backbone)
        return SequenceEncoder(self.backbone, View(patches=cast(Mapping[str, Patch], self.patches[task])))

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            return self.learn_first_task(task)
        torch.manual_seed(self.cfg.train.seed * 1000 + 700 + task.index)
        p = _patches(self.cfg.model.d, self.backbone.n_blocks, self.settings, self.cfg.model.dropout)
        p = self.patches[task.name] = p.to(self.device)
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        return self.net(self._encoder(task.name), head, p, head, module=nn.ModuleDict({"patches": p, "head": head}))

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbone if task.index == 0 else self.patches[task.name])

    def task_net(self, task: str):
        return self.net(self._encoder(task), self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads, "patches": self.patches})

    def export(self, task: str) -> dict[str, torch.Tensor]:
        out = super().export(task)
        if task in self.patches:
            out.update(prefixed("patches", self.patches[task]))
        return out

    @classmethod
    def serving_view(cls, base: LoadedBase, config: dict, tensors: dict, device) -> View | None:
        sd = strip("patches", tensors)
        if not sd:
            return None
        s = PeterRecSettings.model_validate(config["settings"])
        p = _patches(base.backbone.d, base.backbone.n_blocks, s, base.backbone.cfg.dropout)
        p.load_state_dict(sd)
        return View(patches=cast(Mapping[str, Patch], p.to(device).eval()))
