"""Ranking and classification metrics, exact by default.

Tie rule (pessimistic): the rank of the target is 1 + the number of *other* candidates whose score is
greater than **or equal to** the target's score. A model that scores everything the same therefore
ranks every target last, never first; with continuous scores ties are rare and the rule rarely bites.

Full ranking scores the target against every item of the catalogue (item 0, the padding, is never a
candidate). The catalogue is scored in chunks, so memory is O(batch x chunk) whatever its size.
Sampled ranking (the target against n uniformly drawn other items) exists only on request, and its
results are labelled `sampled-<n>` wherever they are written.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DEFAULT_KS = (5, 10, 20)


def ranks_full(
    users: torch.Tensor,  # [B, d] user vectors
    items: torch.Tensor,  # [N + 1, d] item vectors; row 0 is padding
    targets: torch.Tensor,  # [B] item index in 1..N
    bias: torch.Tensor | None = None,  # [N + 1] optional per-item bias
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,  # (row, item) pairs that are not candidates
    chunk: int = 65_536,
) -> torch.Tensor:
    """Exact 1-based rank of each target among all items, pessimistic on ties.

    The target's own column is skipped explicitly rather than counted and subtracted: a matmul and a
    dot product can round the same score differently, and the target must never outrank itself."""
    target_score = (users * items[targets]).sum(-1)
    if bias is not None:
        target_score = target_score + bias[targets]
    ahead = torch.zeros(len(users), dtype=torch.long, device=users.device)
    n = items.shape[0]
    for start in range(1, n, chunk):
        stop = min(n, start + chunk)
        s = users @ items[start:stop].T
        if bias is not None:
            s = s + bias[start:stop]
        beats = s >= target_score[:, None]
        beats &= targets[:, None] != torch.arange(start, stop, device=users.device)[None, :]
        if exclude is not None:  # e.g. items the user has already seen; built per chunk to bound memory
            rows, cols = exclude
            sel = (cols >= start) & (cols < stop)
            beats[rows[sel], cols[sel] - start] = False
        ahead += beats.sum(-1)
    return ahead + 1


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of the target column in each row of a dense score matrix (classes, or sampled candidates)."""
    t = scores.gather(1, targets[:, None])
    return (scores >= t).sum(-1)  # counts the target itself: 1 + the others scoring >= it


def ranks_sampled(
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    n_negatives: int,
    generator: torch.Generator,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank of the target among itself and n_negatives uniform non-target items (per user)."""
    n_items = items.shape[0] - 1
    neg = torch.randint(1, n_items, (len(users), n_negatives), generator=generator, device=users.device)
    neg = neg + (neg >= targets[:, None]).long()  # skip the target: uniform over the other N - 1 items
    cand = torch.cat([targets[:, None], neg], 1)
    scores = torch.einsum("bd,bkd->bk", users, items[cand])
    if bias is not None:
        scores = scores + bias[cand]
    return ranks_from_scores(scores, torch.zeros_like(targets))


def _per_example(r: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each example's reciprocal rank, NDCG and hit at cutoff k (0 beyond k)."""
    hit = r <= k
    return {
        f"MRR@{k}": np.where(hit, 1.0 / r, 0.0),
        f"NDCG@{k}": np.where(hit, 1.0 / np.log2(r + 1.0), 0.0),
        f"HR@{k}": hit.astype(np.float64),
    }


def rank_metrics(ranks: np.ndarray | torch.Tensor, ks=DEFAULT_KS, ci: bool = False) -> dict:
    """MRR@k, NDCG@k, HR@k (mean over examples) from 1-based ranks. k may exceed the catalogue.

    With ci=True, also "ci95": the half-width of each mean's 95% confidence interval over examples
    (normal approximation, 1.96 standard errors): how far a number could move on another test sample
    of the same size, the yardstick for "is this difference real"."""
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    out: dict = {}
    if len(r) == 0:
        return out
    half: dict[str, float] = {}
    for k in ks:
        for name, v in _per_example(r, k).items():
            out[name] = float(v.mean())
            if ci:
                half[name] = float(1.96 * v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    if ci:
        out["ci95"] = half
    return out


def accuracy(ranks: np.ndarray | torch.Tensor) -> float:
    """Classification accuracy: the true class must score strictly above every other class."""
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks)
    return float((r == 1).mean()) if len(r) else math.nan


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of binary scores (scikit-learn); NaN when the split holds only one class."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))
