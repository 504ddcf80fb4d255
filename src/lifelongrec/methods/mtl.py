"""MTL: joint training of T1 with each later task Ti (Conure, section 6.1 and Figure 5d).

Not every user has a label in every task, so, as in Conure, MTL learns pairs: for each Ti (i >= 2) a
model is trained from scratch on loss(Ti) + w * loss(T1), one T1 batch per Ti step; w is
`method.mtl_t1_weight` (the paper searched 0.05..1.0 and found 0.1 best). Every pair stores its own
model; T1 itself is served by the model trained on T1 alone.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..objectives import NextItemObjective, TaskNet
from .base import Method, TaskInfo


class MTL(Method):
    name = "mtl"

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.backbones = nn.ModuleDict()
        self.t1_heads = nn.ModuleDict()  # the T1 head of each joint model

    def _t1_loss(self, task: TaskInfo, backbone, t1_head):
        """A closure that returns w * (T1 loss on the next T1 batch), cycling through T1's training data."""
        t1 = self.learned[0]
        obj = NextItemObjective(self.stream, t1, TaskNet(backbone.encode, t1_head, nn.Module(), []), self.cfg)
        w = self.cfg.method.mtl_t1_weight
        state = {"epoch": 0, "it": iter(())}

        def extra(gen):
            batch = next(state["it"], None)
            if batch is None:
                state["epoch"] += 1
                rng = np.random.default_rng([self.cfg.train.seed, task.index, state["epoch"]])
                state["it"] = obj.train_batches(rng, self.cfg.train.batch_size)
                batch = next(state["it"])
            return w * obj.loss(batch, gen)[0]

        return extra

    def before_task(self, task: TaskInfo):
        b = self.backbones[task.name] = self.fresh_backbone(task.index)
        head = self.heads[task.name] = self.make_head(task, b)
        if task.index == 0:
            return self.net(b.encode, head, b, head, module=nn.ModuleDict({"backbone": b, "head": head}))
        t1_head = self.t1_heads[task.name] = self.make_head(TaskInfo(self.learned[0], "next_item", task.index), b)
        module = nn.ModuleDict({"backbone": b, "head": head, "t1_head": t1_head})
        return self.net(b.encode, head, b, head, t1_head, module=module, extra_loss=self._t1_loss(task, b, t1_head))

    def after_task(self, task: TaskInfo) -> None:
        super().after_task(task)
        self.freeze(self.backbones[task.name])

    def eval_net(self, task: str):
        return self.net(self.backbones[task].encode, self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbones": self.backbones, "heads": self.heads, "t1_heads": self.t1_heads})

    def task_state(self, task: str):
        sd = {f"backbone.{k}": v for k, v in self.backbones[task].state_dict().items()}
        sd.update({f"head.{k}": v for k, v in self.heads[task].state_dict().items()})
        return sd

    def backbones_stored(self) -> int:
        return len(self.backbones)
