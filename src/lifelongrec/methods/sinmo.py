"""SinMo: a single, randomly initialised model per task (Conure, section 6.1).

No transfer and no forgetting; every task stores a whole backbone.
"""

from __future__ import annotations

from torch import nn

from .base import Method, TaskInfo


class SinMo(Method):
    name = "sinmo"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.backbones = nn.ModuleDict()

    def before_task(self, task: TaskInfo):
        b = self.backbones[task.name] = self.fresh_backbone(task.index)
        head = self.heads[task.name] = self.make_head(task, b)
        return self.net(b.encode, head, b, head, module=nn.ModuleDict({"backbone": b, "head": head}))

    def eval_net(self, task: str):
        return self.net(self.backbones[task].encode, self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads})

    def task_state(self, task: str):
        sd = {f"backbone.{k}": v for k, v in self.backbones[task].state_dict().items()}
        sd.update({f"head.{k}": v for k, v in self.heads[task].state_dict().items()})
        return sd

    def backbones_stored(self) -> int:
        return len(self.backbones)
