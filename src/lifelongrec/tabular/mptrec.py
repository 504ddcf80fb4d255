"""MPT-Rec (Bai et al., "Efficient Multi-task Prompt Tuning for Recommendation", arXiv 2408.17214,
ACM TOIS 2025) in its own tabular setting. Reconstructed from the authors' public code (the paper's
body was not available; ../shared/papers/mptrec.md), as follows.

Stage 1, multi-task pre-training over tasks t = 1..T, from x = the concatenated field embeddings:
    u     = MLP_sh(x)                       task-sharing representation
    s_t   = MLP_t(x);  s~_t = s_t * p_t     task-specific representation, scaled by the task prompt p_t
    g_t   = softmax(W_t x)  (no bias);  f_t = g_t[0] s~_t + g_t[1] u
    y_t   = Tower_t(f_t);   y^u_t = Tower_t(u)   (the same tower on u alone)
    q     = log_softmax(C(GRL(u)))          environment classifier behind a gradient-reversal layer
    L1    = sum_t BCE(y_t) + lambda_u sum_t BCE(y^u_t) + lambda_e NLL(q, env) + L2
Environment labels: random at first, then every `recluster_every` epochs each training row's label is
the task whose fused prediction has the lowest loss on it.

Stage 2, a new task n, every stage-1 tensor frozen:
    h  = LayerNorm(W2 ReLU(W1 x));  a = softmax(h [p_1..p_T]' / tau)     attention over the old prompts
    s_n = sum_t a_t s_t;  s~_n = s_n * p_n;  f = g[0] s~_n + g[1] u  (g = softmax(W_g x))
    y_n = Tower_n(f)
Variants (the code's): fixed attention weights 1/T (`attention: fixed`), attention by the similarity
of the task prompts (`task_embedding`), a fixed gate [0.1, 0.9] (`gate: fixed`).

Ours, where the authors' code is inconsistent (mptrec.md section 6): environment labels are kept by
training-row id (a buffer of the model), so batches can be shuffled (the authors' loaders never
shuffle because their labels follow the batch position); the GRL coefficient follows DANN's schedule
over optimizer steps, 2 / (1 + exp(-10 p)) - 1 with p = step / total steps (the code counts the batch
size instead of the steps per epoch); the frozen stage-1 model runs in eval mode without gradients.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import MPTRecSettings, TabularModel
from .models import FieldEmbedding, MultiTask, Tower, freeze, mlp


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.alpha * grad, None


def reverse_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """The identity forward; the gradient times -alpha backward."""
    return cast(torch.Tensor, _ReverseGrad.apply(x, alpha))


def grl_alpha(progress: float) -> float:
    """DANN's schedule: 0 at the start of training, towards 1 at the end."""
    return float(2.0 / (1.0 + torch.exp(torch.tensor(-10.0 * progress))) - 1.0)


class MPTRec(MultiTask):
    """Stage 1 over `tasks` (T >= 2), trained jointly."""

    env: torch.Tensor

    def __init__(self, cards: list[int], cfg: TabularModel, tasks: list[str], n_train_rows: int) -> None:
        super().__init__()
        self.tasks = list(tasks)
        d = cfg.expert[-1]
        self.embedding = FieldEmbedding(cards, cfg.field_dim)
        d_in = self.embedding.d_out
        self.shared = mlp(d_in, cfg.expert, cfg.dropout)
        self.specific = nn.ModuleDict({t: mlp(d_in, cfg.expert, cfg.dropout) for t in tasks})
        self.prompts = nn.Parameter(torch.empty(len(tasks), d))
        nn.init.normal_(self.prompts)  # nn.Embedding's default, as the authors' env_embedding_network
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, 2, bias=False) for t in tasks})
        self.towers = nn.ModuleDict({t: Tower(d, cfg) for t in tasks})
        self.env_classifier = nn.Linear(d, len(tasks))
        nn.init.xavier_uniform_(self.env_classifier.weight)
        # Each training row's environment (a task index), re-assigned during training; a buffer so a
        # resumed run continues with the labels it had.
        self.register_buffer(
            "env", torch.randint(0, len(tasks), (n_train_rows,), generator=torch.Generator().manual_seed(0))
        )

    def parts(self, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(x, u, {t: s_t}) for a batch."""
        x = self.embedding(fields)
        return x, self.shared(x), {t: self.specific[t](x) for t in self.tasks}

    def heads(self, x: torch.Tensor, u: torch.Tensor, s: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        fused, generic = {}, {}
        for k, t in enumerate(self.tasks):
            g = torch.softmax(self.gates[t](x), -1)
            fused[t] = self.towers[t](g[:, :1] * (s[t] * self.prompts[k]) + g[:, 1:] * u)
            generic[t] = self.towers[t](u)
        return fused, generic

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        x, u, s = self.parts(fields)
        return self.heads(x, u, s)[0]

    def loss(
        self,
        fields: torch.Tensor,
        y: dict[str, torch.Tensor],
        rows: torch.Tensor,
        settings: MPTRecSettings,
        progress: float,
    ) -> torch.Tensor:
        x, u, s = self.parts(fields)
        fused, generic = self.heads(x, u, s)
        loss = torch.stack([F.binary_cross_entropy_with_logits(fused[t], y[t]) for t in self.tasks]).sum()
        if settings.generic_weight:
            generic_loss = torch.stack([F.binary_cross_entropy_with_logits(generic[t], y[t]) for t in self.tasks])
            loss = loss + settings.generic_weight * generic_loss.sum()
        if settings.env_weight:
            q = self.env_classifier(reverse_grad(u, grl_alpha(progress)))
            loss = loss + settings.env_weight * F.cross_entropy(q, self.env[rows])
        return loss

    @torch.no_grad()
    def recluster(self, fields: torch.Tensor, y: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        """Each of these training rows' environment := the task whose fused prediction fits it best."""
        per_task = torch.stack(
            [F.binary_cross_entropy_with_logits(self(fields)[t], y[t], reduction="none") for t in self.tasks], 1
        )
        self.env[rows] = per_task.argmin(1)


class MPTRecNewTask(MultiTask):
    """Stage 2: a new task over a frozen stage-1 MPTRec (its prompts, experts, u and embeddings)."""

    def __init__(self, base: MPTRec, cfg: TabularModel, settings: MPTRecSettings, task: str) -> None:
        super().__init__()
        self.tasks = [task]
        self.base = freeze(base)
        self.settings = settings
        d, d_in = cfg.expert[-1], base.embedding.d_out
        self.prompt = nn.Parameter(torch.empty(d))
        nn.init.normal_(self.prompt)
        # Only what a variant uses exists (and counts as trainable): the projection for instance-level
        # attention, the gate when it is learned.
        if settings.attention == "instance":
            self.project = nn.Sequential(
                nn.Linear(d_in, d // 2, bias=False), nn.ReLU(), nn.Linear(d // 2, d, bias=False), nn.LayerNorm(d)
            )
        if settings.gate == "learned":
            self.gate = nn.Linear(d_in, 2, bias=False)
        self.tower = Tower(d, cfg)
        self.last_attention: torch.Tensor | None = None  # for the attention entropy the runner logs

    def train(self, mode: bool = True) -> MPTRecNewTask:
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, fields: torch.Tensor) -> dict[str, torch.Tensor]:
        base, st = self.base, self.settings
        with torch.no_grad():
            x, u, s = base.parts(fields)
            old = torch.stack([s[t] for t in base.tasks], 1)  # [B, T, d]
        prompts = base.prompts.detach()
        if st.attention == "fixed":
            a = torch.full((len(fields), len(base.tasks)), 1.0 / len(base.tasks), device=fields.device)
        elif st.attention == "task_embedding":
            a = torch.softmax(prompts @ self.prompt / st.temperature, -1).expand(len(fields), -1)
        else:
            a = torch.softmax(self.project(x) @ prompts.T / st.temperature, -1)
        self.last_attention = a.detach()
        mixed = (a.unsqueeze(-1) * old).sum(1) * self.prompt
        if st.gate == "fixed":
            g = torch.tensor(st.fixed_gate, device=fields.device).expand(len(fields), 2)
        else:
            g = torch.softmax(self.gate(x), -1)
        return {self.tasks[0]: self.tower(g[:, :1] * mixed + g[:, 1:] * u)}
