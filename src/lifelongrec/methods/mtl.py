"""MTL: joint training of T1 with each later task Ti (Conure, section 6.1 and Figure 5d).

Not every user has a label in every task, so, as in Conure, MTL learns pairs: for each Ti (i >= 2) a
model is trained from scratch on loss(Ti) + w * loss(T1), one random T1 batch per Ti step; w is
`method.mtl_t1_weight` (the paper searched 0.05..1.0 and found 0.1 best). Every pair stores its own
model; T1 itself is served by the model trained on T1 alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import trim_left
from ..objectives import NextItemObjective, TaskNet
from .base import BackbonePerTask, TaskInfo


class MTL(BackbonePerTask):
    name = "mtl"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.t1_heads = nn.ModuleDict()  # the T1 head of each joint model

    def _t1_loss(self, task: TaskInfo, backbone, t1_head):
        """A closure returning w * (T1 loss on a random T1 batch). The batch is drawn with the engine's
        per-epoch generator, so a resumed run draws exactly the batches an uninterrupted one would."""
        t1 = self.learned[0]
        obj = NextItemObjective(self.stream, t1, TaskNet(backbone.encode, t1_head, nn.Module(), []), self.cfg)
        w, n, bs = self.cfg.method.mtl_t1_weight, len(obj.train_w), self.cfg.train.batch_size

        def extra(gen):
            idx = torch.randint(n, (min(bs, n),), generator=gen).numpy()
            batch = (torch.from_numpy(idx), torch.from_numpy(trim_left(obj.train_w[idx])), None)
            return w * obj.loss(batch, gen)[0]

        return extra

    def before_task(self, task: TaskInfo):
        b = self.fresh_backbone(task.index)
        if task.index == 0:
            return self.own_net(task, b)
        t1_head = self.t1_heads[task.name] = self.make_head(TaskInfo(self.learned[0], "next_item", task.index), b)
        net = self.own_net(task, b, t1_head=t1_head)
        net.extra_loss = self._t1_loss(task, b, t1_head)
        return net

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads, "t1_heads": self.t1_heads})
