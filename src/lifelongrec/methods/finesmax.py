"""FineSmax: the backbone learns T1 and is then frozen; every later task trains only a new head
(Conure, section 6.1). No forgetting by construction."""

from __future__ import annotations

from torch import nn

from .base import Method, TaskInfo


class FineSmax(Method):
    name = "finesmax"

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            self.backbone = self.fresh_backbone(0)
            head = self.heads[task.name] = self.make_head(task, self.backbone)
            return self.net(
                self.backbone.encode,
                head,
                self.backbone,
                head,
                module=nn.ModuleDict({"backbone": self.backbone, "head": head}),
            )
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        net = self.net(self.backbone.encode, head, head, module=head)
        net.frozen_encoder = True  # only the head trains: user vectors are computed once
        return net

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        if task.index == 0:
            self.freeze(self.backbone)

    def eval_net(self, task: str):
        return self.net(self.backbone.encode, self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads})

    def task_state(self, task: str):
        sd = {f"head.{k}": v for k, v in self.heads[task].state_dict().items()}
        if task == self.learned[0]:
            sd.update({f"backbone.{k}": v for k, v in self.backbone.state_dict().items()})
        return sd
