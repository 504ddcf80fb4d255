"""Sequential finetuning: one model learns every task in turn, and nothing protects the old ones.

The forgetting baseline (Conure, section 3.3): after T2 the T1 head reads a backbone that T2 has moved,
and T1's accuracy collapses (the paper saw MRR@5 fall from 0.0473 to 0.0010). Each task's adapter is
its head; every adapter reads the whole base, which every later task overwrites.
"""

from __future__ import annotations

from ..config import MethodSettings
from .base import SharedBackbone, TaskInfo


class SeqFTSettings(MethodSettings):
    """Sequential finetuning has no settings of its own."""


class SeqFT(SharedBackbone):
    name = "seqft"
    Settings = SeqFTSettings

    def before_task(self, task: TaskInfo):
        # Every task, T1 included, trains the one shared backbone together with its new head.
        return self.learn_first_task(task) if task.index == 0 else self.train_everything(task)
