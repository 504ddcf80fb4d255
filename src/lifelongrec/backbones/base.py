"""The backbone contract every method builds on.

`encode(items, view=None) -> hidden [B, L, d]` over left-padded item ids (0 = padding), and
`user_vector(items, view)`, the hidden state at the last position, which with left padding is always
the last real item. Padded positions are kept exactly zero inside the network, so the user vector
does not depend on how much padding precedes the history (tests check this).

What a task changes in a shared backbone travels with the call as a `View`, never as state set on
the module: replacement weights by parameter name (Conure's per-task masked weights), patches on the
blocks' residual branches (PeterRec), a prompt added to the input embeddings (PCL, MPT-Rec). So any
number of tasks can be served at once from one backbone in memory, from any number of threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneConfig

Patch = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class View:
    """One task's view of a shared backbone, passed with every call."""

    weights: Mapping[str, torch.Tensor] | None = None  # parameter name -> the tensor to use instead
    # Patch sites -> patch(input, output): "<block>" patches a residual block's branch output (input:
    # the block input); "<block>_<k>" the k-th sub-layer of the block (NextItNet: its k-th convolution;
    # SASRec: 0 = attention, 1 = feed-forward), input: that sub-layer's input.
    patches: Mapping[str, Patch] | None = None
    # Added to the input item embeddings (before masking, so padding stays zero): [L, d] (or [B, L, d],
    # one per user) is one vector per position, right-aligned to the window (PCL's position-wise prompt).
    prompt: torch.Tensor | None = None
    # [m, d] prompt tokens put right before each row's first real item (PCL's prefix variant); the
    # states returned are the items' own, with the usual zeros at padding.
    prefix: torch.Tensor | None = None

    def weight(self, module: nn.Module) -> torch.Tensor:
        """The weight `module` computes with under this view (its own unless replaced)."""
        if self.weights is not None:
            w = self.weights.get(cast(str, module.path) + ".weight")  # `path`: set by Backbone.name_modules
            if w is not None:
                return w
        return module.weight  # type: ignore[return-value]


PLAIN = View()


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

    @property
    def d(self) -> int:
        return self.cfg.d

    def name_modules(self) -> None:
        """Give every submodule its parameter-name prefix, so a View can replace its weight by name."""
        for name, m in self.named_modules():
            object.__setattr__(m, "path", name)

    def encode(self, items: torch.Tensor, view: View | None = None) -> torch.Tensor:
        view = view or PLAIN
        mask = (items > 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)  # [B, L, 1]
        x = F.embedding(items, view.weight(self.item_embedding), padding_idx=0)
        if view.prompt is not None:
            x = x + self._aligned(view.prompt, x.shape[1])
        if view.prefix is None:
            return self._encode(x * mask, mask, view)
        ext, ext_mask = self._with_prefix(x * mask, mask, view.prefix)
        m = view.prefix.shape[0]
        return self._encode(ext, ext_mask, view)[:, m:] * mask

    @staticmethod
    def _with_prefix(x: torch.Tensor, mask: torch.Tensor, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, m + L, d] inputs and mask: each row's padding, then the m prefix tokens, then its items
        (which keep their columns, shifted by m)."""
        B, L, d = x.shape
        m = prefix.shape[0]
        ext = torch.cat([x.new_zeros(B, m, d), x], 1)
        ext_mask = torch.cat([mask.new_zeros(B, m, 1), mask], 1)
        pads = (mask[..., 0] == 0).sum(1)  # left padding: the first real item sits at column pads
        cols = pads[:, None] + torch.arange(m, device=x.device)[None, :]  # [B, m]
        rows = torch.arange(B, device=x.device)[:, None].expand(B, m)
        ext = ext.index_put((rows, cols), prefix.expand(B, m, d).to(ext.dtype), accumulate=True)
        ext_mask = ext_mask.index_put((rows, cols), ext_mask.new_ones(B, m, 1))
        return ext, ext_mask

    @staticmethod
    def _aligned(prompt: torch.Tensor, width: int) -> torch.Tensor:
        """A [L, d] prompt (or [B, L, d], one per user), one vector per position, meets a left-padded (and
        trimmed) window from the right: its last row goes with the most recent item."""
        if prompt.dim() not in (2, 3):
            return prompt
        have = prompt.shape[-2]
        if have < width:
            raise ValueError(f"a window of {width} positions is longer than the prompt's {have}")
        return prompt[..., have - width :, :]

    def forward(self, items: torch.Tensor, view: View | None = None) -> torch.Tensor:
        return self.encode(items, view)

    def user_vector(self, items: torch.Tensor, view: View | None = None) -> torch.Tensor:
        return self.encode(items, view)[:, -1]

    @property
    def n_blocks(self) -> int:  # pragma: no cover
        """Residual blocks, each with a patchable branch (View.patches is keyed by their index)."""
        raise NotImplementedError

    @staticmethod
    def patch(view: View, index: int | str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Block `index`'s residual branch under `view`: `x` is the block input, `y` the branch output."""
        if view.patches is not None and str(index) in view.patches:
            return view.patches[str(index)](x, y)
        return y

    def _encode(self, x: torch.Tensor, mask: torch.Tensor, view: View) -> torch.Tensor:  # pragma: no cover
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
    backbone.name_modules()
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
