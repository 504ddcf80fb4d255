"""A tabular user encoder behind the same encoder protocol as the sequence backbones: the setting of
MPT-Rec (Bai et al.), where a user is a row of categorical fields, not a history.

    x = concat_f E_f[fields[:, f]]        one embedding table per field (id 0 = unknown / missing)
    u = MLP(x)                            [B, d]; returned as states [B, 1, d]

A batch is a dict of named tensors with `fields` ([B, F] int64, each column in 0..cardinality_f - 1),
so objectives and heads written for user vectors work unchanged on top of it.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import View


class TabularEncoder(nn.Module):
    def __init__(self, cardinalities: list[int], d: int, field_dim: int = 8, hidden: list[int] | None = None) -> None:
        super().__init__()
        if not cardinalities or min(cardinalities) < 1:
            raise ValueError(f"every field needs a cardinality >= 1, got {cardinalities}")
        self.d = d
        self.fields = nn.ModuleList(nn.Embedding(c, field_dim) for c in cardinalities)
        dims = [len(cardinalities) * field_dim, *(hidden or [2 * d])]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], d))
        self.mlp = nn.Sequential(*layers)

    def forward(self, fields: torch.Tensor, view: View | None = None) -> torch.Tensor:
        if fields.dim() != 2 or fields.shape[1] != len(self.fields):
            raise ValueError(f"fields must be [B, {len(self.fields)}], got {tuple(fields.shape)}")
        x = torch.cat([emb(fields[:, i]) for i, emb in enumerate(self.fields)], -1)
        if view is not None and view.prompt is not None:
            x = x + view.prompt  # a task prompt on the field embeddings (MPT-Rec-style methods)
        return self.mlp(x)

    # the encoder protocol (tasknet.Encoder)
    def states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["fields"]).unsqueeze(1)

    def user_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["fields"])
