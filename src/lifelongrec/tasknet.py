"""How a method hands one task's network to the engine and to inference.

A `TaskNet` is an encoder (a named-tensor batch -> user states), the task's head, the module whose
weights are checkpointed, the parameters to train, and callbacks. Nothing in it is a per-method flag:
what differs between methods is which encoder they pass (a backbone under a task's `View`, a cached
frozen encoder, a tabular encoder) and which callbacks they add (Conure restores the weights that
earlier tasks own after every step; MTL adds its joint T1 loss).

Batches are dicts of tensors, as RecBole's `Interaction`: `items` ([B, L] left-padded item ids) for
sequence encoders, `fields` ([B, F] categorical field ids) for a tabular one, `row` (the examples'
indices in the task's training set) where an objective knows them, and the targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .backbones import Backbone, View

Batch = dict[str, torch.Tensor]


class Encoder(Protocol):
    def states(self, batch: Batch) -> torch.Tensor:
        """[B, L, d] user states; position L-1 is the user vector (a tabular encoder returns L = 1)."""

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        """[B, d]: the state at the last position."""


class SequenceEncoder:
    """A sequence backbone under one task's view. `view` is a View, or a function that builds it per
    call (Conure's training view must be rebuilt inside every step's autograd graph)."""

    def __init__(self, backbone: Backbone, view: View | Callable[[], View] | None = None) -> None:
        self.backbone, self._view = backbone, view

    def view(self) -> View | None:
        return self._view() if callable(self._view) else self._view

    def states(self, batch: Batch) -> torch.Tensor:
        return self.backbone.encode(batch["items"], self.view())

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        return self.states(batch)[:, -1]


class Callback:
    """Method hooks around the engine's steps. Every hook is optional."""

    def on_fit_start(self, objective: Any) -> None:
        """Before the first epoch (and again when a phase or a resume starts)."""

    def before_step(self) -> None:
        """Before every optimizer step's forward pass."""

    def extra_loss(self, gen: torch.Generator) -> torch.Tensor | None:
        """A term added to the task loss at every step (a joint objective)."""
        return None

    def after_step(self) -> None:
        """After every optimizer step."""


class CachedEncoder(Callback):
    """A frozen encoder whose training user vectors are computed once per task and reused every epoch
    (FineSmax: only the head trains). Exact, because a frozen backbone runs in eval mode: the same
    input always gives the same vector. Rows are looked up by the batch's `row` key; any batch without
    one (evaluation) goes to the wrapped encoder."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.cache: torch.Tensor | None = None

    def on_fit_start(self, objective: Any) -> None:
        if self.cache is not None:
            return
        with torch.no_grad():
            self.cache = objective.train_user_vectors_all(self.inner)

    def states(self, batch: Batch) -> torch.Tensor:
        return self.inner.states(batch)

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        if self.cache is not None and "row" in batch:
            return self.cache[batch["row"].to(self.cache.device)]
        return self.inner.user_vectors(batch)


def pool(states: torch.Tensor, items: torch.Tensor, how: str) -> torch.Tensor:
    """User vectors from states [B, L, d] of left-padded `items`: the last position, or the mean over the
    real (non-padding) positions."""
    if how == "last":
        return states[:, -1]
    real = (items > 0).unsqueeze(-1).to(states.dtype)
    return (states * real).sum(1) / real.sum(1).clamp(min=1)


def head_input(encoder: Encoder, batch: Batch, pooling: str) -> torch.Tensor:
    """The user vectors a task's head reads (its `pooling`), the same in training and in serving."""
    if pooling == "last":
        return encoder.user_vectors(batch)
    return pool(encoder.states(batch), batch["items"], pooling)


@dataclass
class TaskNet:
    encoder: Any  # an Encoder
    head: nn.Module
    module: nn.Module
    params: list[nn.Parameter]
    callbacks: list[Callback] = field(default_factory=list)

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        return self.encoder.user_vectors(batch)


def to_device(batch: dict[str, Any], device: torch.device) -> Batch:
    """Move a batch's arrays and tensors to `device` (numpy arrays become tensors)."""
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(v) if isinstance(v, np.ndarray) else v
        out[k] = t.to(device, non_blocking=True)
    return out
