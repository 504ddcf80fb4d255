"""Sequential finetuning: one model learns every task in turn, and nothing protects the old ones.

The forgetting baseline (Conure, section 3.3): after T2 the T1 head reads a backbone that T2 has moved,
and T1's accuracy collapses (the paper saw MRR@5 fall from 0.0473 to 0.0010).
"""

from __future__ import annotations

from .base import SharedBackbone, TaskInfo, _tensors


class SeqFT(SharedBackbone):
    name = "seqft"

    def before_task(self, task: TaskInfo):
        # Every task, T1 included, trains the one shared backbone together with its new head.
        return self.learn_first_task(task) if task.index == 0 else self.train_everything(task)

    def task_state(self, task: str):
        # Serving an old task needs the current backbone, which every later task overwrites.
        return {**_tensors("backbone", self.backbone), **_tensors("head", self.heads[task])}

    def added_bytes(self, task: str) -> int:
        return sum(p.numel() * p.element_size() for p in self.heads[task].parameters())
