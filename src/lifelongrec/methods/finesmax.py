"""FineSmax: the backbone learns T1 and is then frozen; every later task trains only a new head
(Conure, section 6.1). No forgetting by construction."""

from __future__ import annotations

from .base import SharedBackbone, TaskInfo


class FineSmax(SharedBackbone):
    name = "finesmax"

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            return self.learn_first_task(task)
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        net = self.net(self.backbone.encode, head, head, module=head)
        net.frozen_encoder = True  # only the head trains: user vectors are computed once
        return net

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        if task.index == 0:
            self.freeze(self.backbone)
