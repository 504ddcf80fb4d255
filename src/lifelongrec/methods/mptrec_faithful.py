"""MPT-Rec with its own protocol in the stream (../shared/papers/mptrec.md section 7, option A): the
paper pre-trains several tasks jointly, then adds a new task by prompt tuning alone.

- T1 (next item) is pre-trained as for every method.
- Stage 1, at the second task: T1 and it are learned jointly. The backbone keeps training; each of the
  two tasks gets an expert on the backbone's states, a prompt scaling it and a gate with the states
  (methods/mptrec.py's TaskPromptExperts, with no earlier task to mix); the loss is the second task's plus
  T1's next-item loss through its own expert (one random T1 batch per step), the sum of the task losses
  as the authors' two-task trainer at commit 5d02623, whose generic and adversarial terms are commented
  out there (the tabular form, `lifelongrec tabular run`, has them). T1's outputs therefore change once,
  at stage 1: the matrix shows it.
- Every later task: everything from stage 1 frozen; only a new prompt, the attention over the two
  stage-1 prompts (which mixes their frozen experts: no expert of its own, as the paper's new task), a
  gate and a head train. From then on nothing earlier changes, bit for bit.
"""

from __future__ import annotations

from torch import nn

from ..objectives import NextItemObjective
from ..tasknet import TaskNet
from .base import SharedBackbone, TaskInfo
from .mptrec import MPTRec, PromptExpertEncoder, TaskPromptExperts
from .mtl import JointT1Loss


class MPTRecFaithful(MPTRec):
    name = "mptrec_faithful"

    def before_task(self, task: TaskInfo) -> TaskNet:
        if task.index == 0:
            return self.learn_first_task(task)
        if task.index == 1:
            return self._stage1(task)
        stage1 = [self.tasks[t] for t in self.learned[:2]]
        tp = TaskPromptExperts(self.backbone.d, len(stage1), self.settings, own_expert=False).to(self.device)
        tp.copy_earlier(stage1)  # type: ignore[arg-type]
        self.tasks[task.name] = tp
        s = self.settings
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        return self.net(self._encoder(task.name), head, tp, head, module=nn.ModuleDict({"task": tp, "head": head}))

    def _stage1(self, task: TaskInfo) -> TaskNet:
        t1, d = self.learned[0], self.backbone.d
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        mods = {}
        for name in (t1, task.name):
            mods[name] = self.tasks[name] = TaskPromptExperts(d, 0, self.settings).to(self.device)
        t1_head = self.heads[t1]
        s = self.settings
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        enc1 = PromptExpertEncoder(self.backbone, mods[t1], train_backbone=True)
        t1_obj = NextItemObjective(self.stream, t1, TaskNet(enc1, t1_head, nn.Module(), []), self.cfg)
        module = nn.ModuleDict(
            {"backbone": self.backbone, "tasks": nn.ModuleDict(mods), "t1_head": t1_head, "head": head}
        )
        net = self.net(
            PromptExpertEncoder(self.backbone, mods[task.name], train_backbone=True),
            head,
            self.backbone,
            *mods.values(),
            t1_head,
            head,
            module=module,
        )
        net.callbacks.append(JointT1Loss(t1_obj, 1.0, self.cfg.train.batch_size))
        return net

    def after_task(self, task: TaskInfo) -> None:
        if task.index == 0:
            SharedBackbone.after_task(self, task)  # the backbone stays trainable for stage 1
            return
        if task.index == 1:
            for m in (self.backbone, self.heads[self.learned[0]], *self.tasks.values()):
                self.freeze(m)
            SharedBackbone.after_task(self, task)
            return
        super().after_task(task)
