"""SASRec (Kang and McAuley, ICDM 2018): causal self-attention over the item sequence.

    x_0 = E[items] * sqrt(d) + P[position]
    x_l = x_{l-1} + Attn(LN(x_{l-1}))          causal: position t attends to positions <= t
    x_l = x_l + FFN(LN(x_l))                   FFN(z) = W2 relu(W1 z)
    h   = LN(x_L)

`block="original"` follows Kang and McAuley's reference code instead (and the PyTorch ports that the
strongest published SASRec results use): with y = LN(x), x = y + Attn(q=y, k=x, v=x); then
y = LN(x), x = y + FFN(y). Keys and values see the un-normalised stream and each residual starts from
the normalised one, so every block output is re-centred.

Positions count from the first real item of the (truncated) window, so the same history gets the same
positions whatever padding precedes it, and a prefix is encoded exactly as during training.
Padded keys are never attended to; padded rows are kept at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, BackboneConfig, View


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d={d} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, view: View, kv: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention of queries from `x` over keys and values from `kv` (default: `x` itself)."""
        B, L, d = x.shape
        w, b = view.weight(self.qkv), self.qkv.bias
        if kv is None:
            qkv = F.linear(x, w, b)
        else:  # the same weights, split: queries from x, keys and values from kv
            qkv = torch.cat([F.linear(x, w[:d], b[:d]), F.linear(kv, w[d:], b[d:])], -1)
        q, k, v = qkv.view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0)
        return F.linear(y.transpose(1, 2).reshape(B, L, d), view.weight(self.out), self.out.bias)


class Layer(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float, inner: int, original: bool = False) -> None:
        super().__init__()
        self.original = original
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.ffn1 = nn.Linear(d, inner)
        self.ffn2 = nn.Linear(inner, d)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, view: View, index: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the state after the attention sub-layer and the FFN's residual update; the caller
        adds the update (through the block's patch hook) and re-applies the padding mask."""
        if self.original:
            y = self.ln1(x)  # the reference code drops attention weights only, not the attention output
            x = self.ln2(y + self._site(view, index, 0, y, self.attn(y, allowed, view, kv=x)))
            return x, self._site(view, index, 1, x, self.ffn(x, view))
        y = self.ln1(x)
        x = x + self.drop(self._site(view, index, 0, y, self.attn(y, allowed, view)))
        z = self.ln2(x)
        return x, self._site(view, index, 1, z, self.ffn(z, view))

    @staticmethod
    def _site(view: View, index: int, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The patch site of sub-layer k (0 attention, 1 feed-forward), when a view carries patches."""
        return y if view.patches is None else Backbone.patch(view, f"{index}_{k}", x, y)

    def ffn(self, z: torch.Tensor, view: View) -> torch.Tensor:
        inner = F.relu(F.linear(z, view.weight(self.ffn1), self.ffn1.bias))
        return self.drop(F.linear(self.drop(inner), view.weight(self.ffn2), self.ffn2.bias))


class SASRec(Backbone):
    ties_next_item_head = True

    def __init__(self, cfg: BackboneConfig, n_items: int) -> None:
        super().__init__(cfg, n_items)
        self.position = nn.Embedding(cfg.max_length, cfg.d)
        nn.init.normal_(self.position.weight, std=cfg.d**-0.5)
        inner = cfg.inner_size or cfg.d
        self.layers = nn.ModuleList(
            Layer(cfg.d, cfg.heads, cfg.dropout, inner, cfg.block == "original") for _ in range(cfg.layers)
        )
        self.ln = nn.LayerNorm(cfg.d)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def n_blocks(self) -> int:
        """Residual blocks, each with a patchable branch (View.patches is keyed by their index)."""
        return len(self.layers)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor, view: View) -> torch.Tensor:
        B, L, _ = x.shape
        real = mask[..., 0] > 0  # [B, L]
        pos = (real.long().cumsum(1) - 1).clamp(min=0)
        if L > self.cfg.max_length:
            raise ValueError(f"sequence length {L} exceeds SASRec max_length {self.cfg.max_length}")
        h = self.drop((x * self.cfg.d**0.5 + self.position(pos)) * mask)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        # A query may attend to earlier real items and always to itself (padded rows would otherwise
        # have no key at all and produce NaN; they are zeroed below anyway).
        allowed = (causal & real[:, None, :]) | torch.eye(L, dtype=torch.bool, device=x.device)
        allowed = allowed[:, None]  # [B, 1, L, L]
        for i, layer in enumerate(self.layers):
            h, update = layer(h, allowed, view, i)
            h = (h + self.patch(view, i, h, update)) * mask
        return self.ln(h) * mask
