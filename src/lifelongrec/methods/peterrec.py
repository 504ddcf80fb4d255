"""PeterRec (Yuan et al., SIGIR 2020): the T1 backbone is frozen; each later task learns small
model patches inside every residual block, plus its own head.

A patch is a bottleneck residual module, x -> x + W_up relu(W_down x), with W_up zero-initialised so
the patched network starts exactly as the pretrained one. Serial insertion patches a block's
residual-branch output; parallel insertion adds a patch of the block input alongside the branch.
Only patches and heads are stored per task, so one backbone serves every task, with no forgetting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SharedBackbone, TaskInfo, _tensors


class Patch(nn.Module):
    def __init__(self, d: int, k: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.down = nn.Linear(d, k)
        self.up = nn.Linear(k, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "serial":
            return y + self.up(F.relu(self.down(y)))
        return y + self.up(F.relu(self.down(x)))


class PeterRec(SharedBackbone):
    name = "peterrec"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.patches = nn.ModuleDict()  # task -> ModuleDict(block index -> Patch)

    def _blocks(self) -> int:
        return len(self.backbone.blocks) if hasattr(self.backbone, "blocks") else len(self.backbone.layers)

    def encoder(self, task: str):
        patches = self.patches[task] if task in self.patches else None  # noqa: SIM401 - ModuleDict has no get

        def encode(items, prompt=None):
            self.backbone.patches = patches
            try:
                return self.backbone.encode(items, prompt)
            finally:
                self.backbone.patches = None

        return encode

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            return self.learn_first_task(task)
        torch.manual_seed(self.cfg.train.seed * 1000 + 700 + task.index)
        m = self.cfg.method
        p = self.patches[task.name] = nn.ModuleDict(
            {str(i): Patch(self.cfg.model.d, m.peterrec_bottleneck, m.peterrec_mode) for i in range(self._blocks())}
        )
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        return self.net(self.encoder(task.name), head, p, head, module=nn.ModuleDict({"patches": p, "head": head}))

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbone if task.index == 0 else self.patches[task.name])

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads, "patches": self.patches})

    def task_state(self, task: str):
        sd = super().task_state(task)
        if task in self.patches:
            sd.update(_tensors("patches", self.patches[task]))
        return sd
