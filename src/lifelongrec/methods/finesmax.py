"""FineSmax: the backbone learns T1 and is then frozen; every later task trains only a new head
(Conure, section 6.1). No forgetting by construction. Because nothing before the head trains, each
task's training user vectors are computed once and reused every epoch (a cached encoder)."""

from __future__ import annotations

from ..config import MethodSettings
from ..tasknet import CachedEncoder, SequenceEncoder
from .base import SharedBackbone, TaskInfo


class FineSmaxSettings(MethodSettings):
    """FineSmax has no settings of its own."""


class FineSmax(SharedBackbone):
    name = "finesmax"
    Settings = FineSmaxSettings

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            return self.learn_first_task(task)
        head = self.heads[task.name] = self.make_head(task, self.backbone)
        cached = CachedEncoder(SequenceEncoder(self.backbone))
        return self.net(cached, head, head, module=head, callbacks=[cached])

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        if task.index == 0:
            self.freeze(self.backbone)
