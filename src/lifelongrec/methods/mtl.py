"""MTL: joint training of T1 with each later task Ti (Conure, section 6.1 and Figure 5d).

Not every user has a label in every task, so, as in Conure, MTL learns pairs: for each Ti (i >= 2) a
model is trained from scratch on loss(Ti) + w * loss(T1), one random T1 batch per Ti step; w is
`method.t1_weight` (the paper searched 0.05..1.0 and found 0.1 best). Every pair stores its own
model; T1 itself is served by the model trained on T1 alone (the run's base).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..config import MethodSettings
from ..data.batches import trim_left
from ..objectives import NextItemObjective
from ..tasknet import Callback, SequenceEncoder, TaskNet
from .base import BackbonePerTask, TaskInfo


class MTLSettings(MethodSettings):
    t1_weight: float = Field(0.1, ge=0)  # weight of the T1 loss (Conure found 0.1 best)


class JointT1Loss(Callback):
    """w * (T1 loss on a random T1 batch), added to every step of the task. The batch is drawn with the
    engine's per-epoch generator, so a resumed run draws exactly the batches an uninterrupted one would."""

    def __init__(self, obj: NextItemObjective, weight: float, batch_size: int) -> None:
        self.obj, self.w, self.bs = obj, weight, batch_size

    def extra_loss(self, gen: torch.Generator) -> torch.Tensor:
        n = len(self.obj.train_w)
        idx = torch.randint(n, (min(self.bs, n),), generator=gen, device=gen.device).cpu().numpy()
        batch = {"row": self.obj._t(idx), "items": self.obj._t(trim_left(self.obj.train_w[idx]))}
        return self.w * self.obj.loss(batch, gen)[0]


class MTL(BackbonePerTask):
    name = "mtl"
    Settings = MTLSettings
    settings: MTLSettings

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.t1_heads = nn.ModuleDict()  # the T1 head of each joint model (training only; not served)

    def before_task(self, task: TaskInfo):
        b = self.fresh_backbone(task.index)
        if task.index == 0:
            return self.own_net(task, b)
        t1_head = self.t1_heads[task.name] = self.make_head(TaskInfo(self.learned[0], "next_item", task.index), b)
        net = self.own_net(task, b, t1_head=t1_head)
        t1 = NextItemObjective(
            self.stream, self.learned[0], TaskNet(SequenceEncoder(b), t1_head, nn.Module(), []), self.cfg
        )
        net.callbacks.append(JointT1Loss(t1, self.settings.t1_weight, self.cfg.train.batch_size))
        return net

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads, "t1_heads": self.t1_heads})
