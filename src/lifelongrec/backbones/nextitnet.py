"""NextItNet as Conure uses it (Conure, section 3.2; Yuan et al., WSDM 2019).

A stack of residual blocks of dilated causal 1-D convolutions over the item embeddings; no position
embedding (the convolutions are order-aware). Each block, with layer norm and ReLU before each
convolution as in Conure:

    h' = h + conv_{2r}(relu(LN(conv_r(relu(LN(h))))))

where conv_r is a causal convolution with kernel k and dilation r. Dilations 4 x {1,2,4,8} give a
receptive field of 1 + 2 (k-1) sum(r) = 1 + 4*15*2*2 = 241 positions with k = 3.

Padding: conv inputs are multiplied by the non-padding mask, so padded positions feed exact zeros to
the convolutions, the same zeros the causal left padding supplies; more padding changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, BackboneConfig, View


class CausalConv1d(nn.Module):
    """Conv over [B, L, d] that sees only the current and earlier positions.

    Computed as one matrix product: the k dilated taps x[t - (k-1-j) r] are concatenated into
    [B*L, k*d] and multiplied by the kernel reshaped to [k*d, d]. On 2 CPU cores this was 15-19%
    faster than F.conv1d over a channels-first copy (fwd+bwd, B=256, L=34, d=64 and 256), and it
    keeps the batch-major layout of the rest of the model. The weight keeps Conv1d's layout
    [d_out, d_in, k], so per-kernel pruning masks apply to it unchanged.
    """

    def __init__(self, d: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.k, self.dilation = kernel_size, dilation
        self.left = (kernel_size - 1) * dilation
        self.weight = nn.Parameter(torch.empty(d, d, kernel_size))
        self.bias = nn.Parameter(torch.zeros(d))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # PyTorch's Conv1d default

    def forward(self, x: torch.Tensor, view: View) -> torch.Tensor:
        w = view.weight(self)  # a task's view may replace the kernel (Conure's masked weights)
        B, L, d = x.shape
        xp = F.pad(x, (0, 0, self.left, 0))
        taps = torch.cat([xp[:, j * self.dilation : j * self.dilation + L] for j in range(self.k)], -1)
        kernel = w.permute(2, 1, 0).reshape(self.k * d, w.shape[0])
        return torch.addmm(self.bias, taps.reshape(B * L, -1), kernel).view(B, L, -1)


class ResidualBlock(nn.Module):
    def __init__(self, d: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.conv1 = CausalConv1d(d, kernel_size, dilation)
        self.ln2 = nn.LayerNorm(d)
        self.conv2 = CausalConv1d(d, kernel_size, 2 * dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, view: View, index: int = 0) -> torch.Tensor:
        x = F.relu(self.ln1(h)) * mask
        y = self.conv1(x, view)
        if view.patches is not None:  # PeterRec's reference places a patch after each convolution
            y = Backbone.patch(view, f"{index}_0", x, y)
        x = F.relu(self.ln2(y)) * mask
        y = self.conv2(x, view)
        if view.patches is not None:
            y = Backbone.patch(view, f"{index}_1", x, y)
        return self.dropout(y)


class NextItNet(Backbone):
    def __init__(self, cfg: BackboneConfig, n_items: int) -> None:
        super().__init__(cfg, n_items)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.d, cfg.kernel_size, r, cfg.dropout) for r in cfg.dilations)
        # Pre-norm residual stacks add up every block's output; without a final norm the hidden state's
        # scale grows with depth and the softmax starts far from uniform (measured: T1 loss above log N).
        self.ln = nn.LayerNorm(cfg.d)

    @property
    def n_blocks(self) -> int:
        """Residual blocks, each with a patchable branch (View.patches is keyed by their index)."""
        return len(self.blocks)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor, view: View) -> torch.Tensor:
        h = x
        for i, block in enumerate(self.blocks):
            # Padded positions of h may hold junk (conv biases); harmless, because every convolution
            # reads its input through the mask, so no real position ever sees them.
            h = h + self.patch(view, i, h, block(h, mask, view, i))
        return self.ln(h) * mask
