"""SinMo: a single, randomly initialised model per task (Conure, section 6.1).

No transfer and no forgetting; every task stores a whole backbone.
"""

from __future__ import annotations

from .base import BackbonePerTask, TaskInfo


class SinMo(BackbonePerTask):
    name = "sinmo"

    def before_task(self, task: TaskInfo):
        return self.own_net(task, self.fresh_backbone(task.index))
