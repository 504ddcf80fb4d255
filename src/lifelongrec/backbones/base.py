"""The backbone contract every method builds on.

`encode(items, prompt=None) -> hidden [B, L, d]` over left-padded item ids (0 = padding), and
`user_vector(items)`, the hidden state at the last position, which with left padding is always the
last real item. Padded positions are kept exactly zero inside the network, so the user vector does
not depend on how much padding precedes the history (tests check this).

Room for what later methods add: `prompt` is added to the input embeddings (PCL, MPT-Rec); every
weight a method may mask or patch is an ordinary parameter reachable by name, and blocks call
`self.patch(i, h)` hooks (identity by default) where PeterRec inserts its bottleneck modules.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import BackboneConfig


class Backbone(nn.Module):
    """Base class: an item embedding plus `encode`. Subclasses implement `_encode`."""

    # Whether next-item scores reuse the input item embedding (SASRec's shared embedding) or a separate
    # softmax matrix (NextItNet and Conure). heads.next_item_head reads it.
    ties_next_item_head = False

    def __init__(self, cfg: BackboneConfig, n_items: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.item_embedding = nn.Embedding(n_items + 1, cfg.d, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=cfg.d**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.patches: nn.ModuleDict | None = None  # filled by PeterRec-like methods

    @property
    def d(self) -> int:
        return self.cfg.d

    def encode(self, items: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        mask = (items > 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)  # [B, L, 1]
        x = self.item_embedding(items)
        if prompt is not None:
            x = x + prompt
        return self._encode(x * mask, mask)

    def user_vector(self, items: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(items, prompt)[:, -1]

    def patch(self, index: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hook on block `index`'s residual branch: `x` is the block input, `y` the branch output.
        PeterRec-style methods set `self.patches` (a ModuleDict keyed by block index) to adapt y."""
        if self.patches is not None and str(index) in self.patches:
            return self.patches[str(index)](x, y)
        return y

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def build_backbone(cfg: BackboneConfig, n_items: int) -> Backbone:
    if cfg.name == "nextitnet":
        from .nextitnet import NextItNet

        backbone: Backbone = NextItNet(cfg, n_items)
    else:
        from .sasrec import SASRec

        backbone = SASRec(cfg, n_items)
    if cfg.init_std is not None:
        normal_init(backbone, cfg.init_std)
    return backbone


def normal_init(module: nn.Module, std: float) -> None:
    """Every weight matrix (embeddings, Linear, NextItNet's convolutions) N(0, std^2), their biases zero,
    padding rows zero; LayerNorms keep their (1, 0) start. As the SASRec PyTorch ports, RecBole and BERT."""
    for m in module.modules():
        w = getattr(m, "weight", None)
        if isinstance(m, nn.LayerNorm) or not isinstance(w, nn.Parameter) or w.dim() < 2:
            continue
        nn.init.normal_(w, std=std)
        bias = getattr(m, "bias", None)
        if isinstance(bias, nn.Parameter):
            nn.init.zeros_(bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                w[m.padding_idx].zero_()
