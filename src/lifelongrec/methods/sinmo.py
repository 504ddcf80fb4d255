"""SinMo: a single, randomly initialised model per task (Conure, section 6.1).

No transfer and no forgetting; every task stores a whole backbone. The reference run of forward
transfer: FWT compares each method's R[j][j] with SinMo's.
"""

from __future__ import annotations

from ..config import MethodSettings
from .base import BackbonePerTask, TaskInfo


class SinMoSettings(MethodSettings):
    """SinMo has no settings of its own."""


class SinMo(BackbonePerTask):
    name = "sinmo"
    Settings = SinMoSettings
    fwt_reference = True

    def before_task(self, task: TaskInfo):
        return self.own_net(task, self.fresh_backbone(task.index))
