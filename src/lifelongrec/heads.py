"""Task heads and their losses.

ItemHead scores items for item tasks: full softmax cross-entropy over the whole catalogue (the default
for T1), sampled softmax (shared negatives; Conure's T1 used 20% of the items), or BPR with one negative
per example. Negatives are uniform over the catalogue unless a distribution over items is given
(`popularity_negatives`: LambdaFM's static popularity sampler, which Conure uses for T2/T3).
ClassHead is a linear layer with cross-entropy for profile tasks. A head holds its own output matrix;
`tie` makes it reuse the backbone's input embedding instead (SASRec's convention).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .backbones import Backbone

Loss = Literal["full", "sampled", "bpr"]


def popularity_negatives(targets: np.ndarray, n_items: int, rho: float = 0.3) -> torch.Tensor:
    """LambdaFM's static popularity sampler (Yuan et al., CIKM 2016) over items 0..N, as Conure trains
    its item tasks: every catalogue item 1..N is ranked by its count among `targets` (most frequent
    first, r = 0, 1, ...; ties by item index, so items never a target come last) and drawn with
    probability proportional to exp(-(r + 1) / (rho * N)). Item 0 (padding) has probability 0.

    The reference code ranks only the items that occur as targets (N = their number); here every item
    of the catalogue can be a negative, so N is the catalogue size and unseen items share the tail.
    """
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    counts = np.bincount(t[(t >= 1) & (t <= n_items)], minlength=n_items + 1)[1:]
    order = np.lexsort((np.arange(n_items), -counts))  # by count descending, then item index
    rank = np.empty(n_items, dtype=np.float64)
    rank[order] = np.arange(n_items)
    w = np.exp(-(rank + 1) / (rho * n_items))
    p = np.concatenate([[0.0], w / w.sum()])
    return torch.from_numpy(p)


def draw_negatives(
    n_items: int,
    shape: tuple[int, ...],
    gen: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative item ids of `shape`: uniform over 1..N (`dist` None), or drawn with replacement from
    `dist`, probabilities over items 0..N (on `gen`'s device, p[0] = 0)."""
    if dist is None:
        return torch.randint(1, n_items + 1, shape, generator=gen, device=device)
    n = int(np.prod(shape))
    if n == 0:
        return torch.zeros(shape, dtype=torch.long, device=device)
    return torch.multinomial(dist, n, replacement=True, generator=gen).view(shape)


class ItemHead(nn.Module):
    def __init__(self, d: int, n_items: int, tied: nn.Embedding | None = None) -> None:
        super().__init__()
        self.n_items = n_items
        self.tied = tied is not None
        if tied is None:
            self.weight = nn.Parameter(torch.empty(n_items + 1, d))
            nn.init.normal_(self.weight, std=d**-0.5)
        else:
            self._tied = [tied]  # a list keeps it out of this module's parameters (owned by the backbone)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))

    @property
    def items(self) -> torch.Tensor:
        """[N + 1, d] item vectors; row 0 (padding) is never a candidate."""
        override = self.__dict__.get("_items")
        if override is not None:
            return override
        return self._tied[0].weight if self.tied else self.weight

    def reading(self, items: torch.Tensor) -> ItemHead:
        """This head scoring against `items` instead of its own matrix (a tied head under a task's
        view of the embedding, Conure with pruned embeddings): a shallow copy sharing every parameter,
        so no shared module is changed."""
        other = copy.copy(self)
        other.__dict__["_items"] = items
        return other

    def full_loss(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over all real items. h: [M, d], target: [M] in 1..N."""
        logits = torch.addmm(self.bias[1:], h, self.items[1:].T)
        return F.cross_entropy(logits, target - 1)

    def sampled_loss(
        self,
        h: torch.Tensor,
        target: torch.Tensor,
        n_neg: int,
        gen: torch.Generator | None = None,
        neg_dist: torch.Tensor | None = None,
    ):
        """Softmax over the target and n_neg negatives shared by the batch (uniform, or drawn from
        `neg_dist`, probabilities over items 0..N on the head's device); a negative that equals the
        row's target is masked out (an accidental hit)."""
        neg = draw_negatives(self.n_items, (n_neg,), gen, h.device, neg_dist)
        w = self.items
        pos = (h * w[target]).sum(-1) + self.bias[target]
        negs = torch.addmm(self.bias[neg], h, w[neg].T)
        negs = negs.masked_fill(neg[None, :] == target[:, None], float("-inf"))
        logits = torch.cat([pos[:, None], negs], 1)
        return F.cross_entropy(logits, torch.zeros_like(target))

    def bpr_loss(
        self,
        h: torch.Tensor,
        target: torch.Tensor,
        gen: torch.Generator | None = None,
        neg_dist: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """BPR: -log sigmoid(s(pos) - s(neg)), one negative per example (uniform, or from `neg_dist`)."""
        neg = draw_negatives(self.n_items, tuple(target.shape), gen, h.device, neg_dist)
        w = self.items
        diff = (h * (w[target] - w[neg])).sum(-1) + self.bias[target] - self.bias[neg]
        return -F.logsigmoid(diff).mean()

    def loss(
        self,
        h,
        target,
        kind: Loss = "full",
        n_neg: int = 0,
        gen: torch.Generator | None = None,
        neg_dist: torch.Tensor | None = None,
    ):
        """`neg_dist`: where the sampled and BPR losses draw negatives (None: uniform over 1..N)."""
        if kind == "full":
            return self.full_loss(h, target)
        if kind == "sampled":
            return self.sampled_loss(h, target, n_neg, gen, neg_dist)
        return self.bpr_loss(h, target, gen, neg_dist)


def next_item_head(backbone: Backbone, n_items: int) -> ItemHead:
    """The head of a next-item task: tied to the input embedding where the backbone's paper does so."""
    tied = backbone.item_embedding if getattr(backbone, "ties_next_item_head", False) else None
    return ItemHead(backbone.item_embedding.embedding_dim, n_items, tied=tied)


class ClassHead(nn.Module):
    def __init__(self, d: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)

    def loss(self, h: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(self.linear(h), target, weight=weight)


class BinaryHead(nn.Module):
    """One logit per user for a yes/no task (class 1 = positive)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(-1)

    def loss(self, h: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(h), target.to(h.dtype), pos_weight=pos_weight)
