"""STL, standard transfer learning: each later task finetunes its own full copy of the T1 model
(Conure, section 5 and Figure 5a). Strong transfer from T1, no forgetting, one stored model per task."""

from __future__ import annotations

from torch import nn

from .base import Method, TaskInfo


class STL(Method):
    name = "stl"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.backbones = nn.ModuleDict()

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            b = self.fresh_backbone(0)
        else:
            b = self.copy_of(self.backbones[self.learned[0]])
            for p in b.parameters():
                p.requires_grad_(True)
        self.backbones[task.name] = b
        head = self.heads[task.name] = self.make_head(task, b)
        return self.net(b.encode, head, b, head, module=nn.ModuleDict({"backbone": b, "head": head}))

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbones[task.name])

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
