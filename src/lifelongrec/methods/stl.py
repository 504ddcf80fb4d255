"""STL, standard transfer learning: each later task finetunes its own full copy of the T1 model
(Conure, section 5 and Figure 5a). Strong transfer from T1, no forgetting, one stored model per task."""

from __future__ import annotations

from typing import cast

from ..backbones import Backbone
from ..config import MethodSettings
from .base import BackbonePerTask, TaskInfo


class STLSettings(MethodSettings):
    """STL has no settings of its own."""


class STL(BackbonePerTask):
    name = "stl"
    Settings = STLSettings

    def before_task(self, task: TaskInfo):
        if task.index == 0:
            return self.own_net(task, self.fresh_backbone(0))
        copy = self.copy_of(cast(Backbone, self.backbones[self.learned[0]]))
        for p in copy.parameters():
            p.requires_grad_(True)
        return self.own_net(task, copy)
