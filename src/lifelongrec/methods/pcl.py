"""PCL: prompt-based continual learning for user modeling (Yang et al., WWW 2025 Companion, arXiv
2502.19628).

What is the paper's (its abstract and figure captions; ../shared/papers/pcl.md, "SEEN"): T1 pretrains a
sequence backbone self-supervised; for every later task the backbone and the item embeddings are
frozen; each task learns position-wise prompts, which act as the task's external memory; contextual
prompts, built by attention, carry what tasks share; prompt tuning runs at a higher learning rate (the
paper's Fig. 3: lr 1e-2).

What is reconstructed here (the body of the paper was not available; pcl.md section 3, "INFERRED"),
kept to three equations:

    (1) prompted input     X_t = E[S_u] + P_t + C_t, then H_t = f(X_t), z_t = H_t at the last position
    (2) contextual prompt  C_t = sum_j a_tj P~_j,  a_t = softmax_j((W_q^t tau_t) . (W_k^t tau_j) / sqrt(d_tau))
                           over the earlier prompted tasks j, whose cached final prompts P~_j are the values
    (3) loss               the task's own loss on z_t (cross-entropy for profiles, the item loss for items)

- P_t [L, d]: one vector per input position, L = the task's input_length, right-aligned to the
  left-padded window (its last row goes with the most recent item) and zero at padding. Initialised
  N(0, prompt_init_std^2).
- tau_t [d_tau]: a task embedding, uniform(0, 2) as TERACON's task embeddings; W_q^t, W_k^t belong to
  task t alone, so learning t changes nothing an earlier task reads.
- When task t ends, P~_t = P_t + C_t is cached and every part of t is frozen. A task is served from its
  P~_t, the frozen backbone and its head: old tasks keep their outputs bit for bit.
- Heads: an item task scores against the frozen item embeddings with its own bias (`item_head: tied`),
  so an item the task never saw as a target can still rank (the cold-start claim); `softmax` gives it
  its own item matrix, and so does a task whose targets are a catalogue of their own (`own_items`:
  Tenrec's articles after videos). The tied head's bias starts at the log frequency of the task's training targets
  (ours: with no matrix of its own, a zero bias leaves popularity to the prompt). Profile tasks: a
  linear head.
- SASRec: the prompt is added to the item embeddings before SASRec multiplies them by sqrt(d), so it
  is scaled with them (and the position embedding is added after, as for any input).
- The universal user representation (ours, as pcl.md suggests): the user vectors of every prompted task
  for one history, concatenated (`universal: mean` averages them); `Predictor.embed("universal", ...)`.

Switches (pcl.md's alternatives; the defaults above are its suggested resolution):
- `prompt: prefix`: m prompt tokens put right before the history's first item instead of vectors added
  to its positions (Backbone.encode, View.prefix); with SASRec they take the first m positions, so m +
  the window must fit in model.max_length.
- `depth: deep`: besides the input prompt, one position-wise prompt before every further block (added
  to the residual stream after each block but the last, through the blocks' patch sites); the
  contextual prompt then mixes whole stacks of earlier prompts.
- `query: sequence` (pcl.md option i): the attention's query also reads the mean of the user's input
  item embeddings, so C is per user; such a task is served by recomputing C (its adapter holds its
  prompt, attention maps and copies of the earlier tasks' keys and prompts).
- `contextual: false`: position-wise prompts alone (the ablation).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ..backbones import Backbone, View
from ..config import MethodSettings
from ..errors import LifelongrecError
from ..tasknet import Batch, SequenceEncoder, TaskNet, pool
from .base import FrozenAfterFirst, LoadedBase, TaskInfo, prefixed, strip


class PCLSettings(MethodSettings):
    # "added": one prompt vector per input position, added to the item embeddings (P_t [L, d]);
    # "prefix": prefix_length prompt tokens put before the history (P_t [m, d]).
    prompt: Literal["added", "prefix"] = "added"
    prefix_length: int = Field(8, ge=1)
    # "input": the prompt meets the input embeddings only; "deep": one more prompt before every further
    # block (added to the residual stream after each block but the last; added prompts only).
    depth: Literal["input", "deep"] = "input"
    contextual: bool = True  # the contextual prompt C_t; false: position-wise prompts alone (the ablation)
    task_dim: int = Field(64, ge=1)  # d_tau, also the attention's width
    prompt_init_std: float = Field(0.02, ge=0.0)
    # Item tasks: score against the frozen item embeddings with a per-task bias ("tied"), or learn a
    # per-task item matrix ("softmax").
    item_head: Literal["tied", "softmax"] = "tied"
    # A tied head has no item matrix of its own to learn popularity into: its bias starts at the log
    # frequency of the task's training targets ("log_prior", ours), or at zero (train.head_bias decides).
    tied_bias: Literal["log_prior", "train"] = "log_prior"
    # Learning rate of the tasks after T1 (prompts, task embedding, attention, head); None: the task's
    # own train.lr. Default 1e-2, the rate of the paper's Fig. 3 (measured on ML-1M T2: bench/RESULTS.md).
    lr: float | None = Field(0.01, gt=0.0)
    # The universal user representation (Predictor.embed("universal")): the user vectors of every
    # prompted task, concatenated or averaged.
    universal: Literal["concat", "mean"] = "concat"
    # The contextual prompt's query: the task embedding alone ("task": one prompt per task), or with the
    # mean of the user's input item embeddings ("sequence": a prompt per user, pcl.md option i).
    query: Literal["task", "sequence"] = "task"

    @model_validator(mode="after")
    def _compatible(self) -> PCLSettings:
        if self.depth == "deep" and self.prompt == "prefix":
            raise ValueError("method.depth=deep needs method.prompt=added (prefix tokens enter at the input only)")
        if self.query == "sequence" and (self.depth == "deep" or not self.contextual):
            raise ValueError("method.query=sequence needs method.contextual=true and method.depth=input")
        return self


class TaskPrompt(nn.Module):
    """One task's prompt parameters, copies of what it attends to (the earlier tasks' task embeddings and
    prompts, frozen, taken when the task starts), and, once it is learned, its final prompt: P + C with
    a task query (what serving and later tasks read), or P with a sequence query (C is per user)."""

    final: torch.Tensor
    done: torch.Tensor
    earlier_keys: torch.Tensor
    earlier_values: torch.Tensor

    def __init__(self, shape: tuple[int, ...], task_dim: int, init_std: float, n_earlier: int, context: int) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(*shape) * init_std)
        self.task_embedding = nn.Parameter(torch.rand(task_dim) * 2.0)
        self.query = nn.Linear(task_dim + context, task_dim, bias=False)
        self.key = nn.Linear(task_dim, task_dim, bias=False)
        self.register_buffer("earlier_keys", torch.zeros(n_earlier, task_dim))
        self.register_buffer("earlier_values", torch.zeros(n_earlier, *shape))
        self.register_buffer("final", torch.zeros(*shape))
        self.register_buffer("done", torch.zeros((), dtype=torch.bool))

    def attend_to(self, earlier: list[TaskPrompt]) -> None:
        """Copy the earlier tasks' task embeddings and final prompts (right-aligned to this shape)."""
        with torch.no_grad():
            for j, e in enumerate(earlier):
                self.earlier_keys[j] = e.task_embedding
                self.earlier_values[j] = _fit(e.final, self.prompt.shape)

    def context(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """C (equation 2): [(B,) L, d], per user when `context` ([B, d]) conditions the query."""
        q_in: torch.Tensor = self.task_embedding
        if context is not None:
            q_in = torch.cat([q_in.expand(len(context), -1), context], 1)
        q = self.query(q_in)  # [(B,) d_tau]
        keys = self.key(self.earlier_keys)  # [J, d_tau]
        weights = torch.softmax(q @ keys.T / math.sqrt(keys.shape[1]), -1)  # [(B,) J]
        return torch.tensordot(weights, self.earlier_values, dims=1)

    def effective(self, contextual: bool, context: torch.Tensor | None = None) -> torch.Tensor:
        """P + C while the task trains (and always with a sequence query); the cached P~ once it is learned."""
        if bool(self.done) and context is None:
            return self.final
        if not contextual or len(self.earlier_keys) == 0:
            return self.prompt
        return self.prompt + self.context(context)


def _prompted(settings: PCLSettings, prompt: torch.Tensor) -> View:
    """The backbone view of a task's prompt: added to the positions, put before the history, or (deep)
    its first row at the input and row i + 1 after block i."""
    if settings.prompt == "prefix":
        return View(prefix=prompt)
    if settings.depth == "input":
        return View(prompt=prompt)
    patches = {str(i): _adder(p) for i, p in enumerate(prompt[1:])}
    return View(prompt=prompt[0], patches=patches)


def _adder(p: torch.Tensor):
    """A block patch that adds the position-wise prompt `p` to the block's branch output."""
    return lambda x, y: y + Backbone._aligned(p, y.shape[1])


def _fit(prompt: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """An earlier task's prompt, [..., L_j, d], in the shape [..., L, d] of this task's prompt, right-aligned
    on positions: its latest rows, zeros before."""
    length, have = shape[-2], prompt.shape[-2]
    if have >= length:
        return prompt[..., have - length :, :]
    pad = prompt.new_zeros(*prompt.shape[:-2], length - have, prompt.shape[-1])
    return torch.cat([pad, prompt], -2)


def _shape(s: PCLSettings, input_length: int, backbone: Backbone) -> tuple[int, ...]:
    """A task's prompt shape: [L, d] (added), [m, d] (prefix) or [blocks, L, d] (deep)."""
    if s.prompt == "prefix":
        return (s.prefix_length, backbone.d)
    return (input_length, backbone.d) if s.depth == "input" else (backbone.n_blocks, input_length, backbone.d)


class PCL(FrozenAfterFirst):
    name = "pcl"
    Settings = PCLSettings
    settings: PCLSettings

    def __init__(self, cfg, stream) -> None:
        super().__init__(cfg, stream)
        self.prompts = nn.ModuleDict()  # task -> TaskPrompt (tasks after T1)

    def _earlier(self, task: str) -> list[TaskPrompt]:
        return [self.prompts[t] for t in self.learned if t in self.prompts and t != task]  # type: ignore[misc]

    def _view(self, task: str) -> View:
        tp = self.prompts[task]
        assert isinstance(tp, TaskPrompt)
        return _prompted(self.settings, tp.effective(self.settings.contextual))

    def _encoder(self, task: str) -> SequenceEncoder:
        if task not in self.prompts:  # T1: the plain backbone
            return SequenceEncoder(self.backbone)
        tp = self.prompts[task]
        assert isinstance(tp, TaskPrompt)
        if self.settings.query == "sequence":
            return ContextEncoder(self.backbone, tp, self.settings)
        return SequenceEncoder(self.backbone, lambda: self._view(task))  # rebuilt in every step's graph

    def before_task(self, task: TaskInfo) -> TaskNet:
        if task.index == 0:
            return self.learn_first_task(task)
        train = self.cfg.train_for(task.index, task.name)
        torch.manual_seed(self.cfg.train.seed * 1000 + 800 + task.index)
        s = self.settings
        earlier = self._earlier(task.name) if s.contextual else []
        shape = _shape(s, self.cfg.input_length(train), self.backbone)
        context = self.backbone.d if s.query == "sequence" else 0
        tp = TaskPrompt(shape, s.task_dim, s.prompt_init_std, len(earlier), context).to(self.device)
        tp.attend_to(earlier)
        self.prompts[task.name] = tp
        head = self.heads[task.name] = self.frozen_embedding_head(task, s.item_head, s.tied_bias)
        module = nn.ModuleDict({"prompt": tp, "head": head})
        return self.net(self._encoder(task.name), head, tp, head, module=module)

    def after_task(self, task: TaskInfo) -> None:
        if task.index > 0:
            tp = self.prompts[task.name]
            assert isinstance(tp, TaskPrompt)
            with torch.no_grad():
                # a task query: P + C, the same for every user; a sequence query: P (C is per user)
                s = self.settings
                tp.final.copy_(tp.prompt if s.query == "sequence" else tp.effective(s.contextual))
                tp.done.fill_(True)
            self.freeze(tp)
        super().after_task(task)

    def task_net(self, task: str) -> TaskNet:
        return self.net(self._encoder(task), self.heads[task], module=self.module())

    def module(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "heads": self.heads, "prompts": self.prompts})

    def export(self, task: str) -> dict[str, torch.Tensor]:
        """The head, the cached final prompt (all that serving reads) and the task embedding (what a
        task learned later attends to)."""
        out = super().export(task)
        tp = self.prompts[task] if task in self.prompts else None  # noqa: SIM401 (ModuleDict has no get)
        if isinstance(tp, TaskPrompt) and self.settings.query == "sequence":
            out.update(prefixed("prompt", tp))  # serving recomputes the per-user C: it needs all of it
        elif isinstance(tp, TaskPrompt):
            out["prompt.final"] = tp.final.detach().clone()
            out["prompt.task_embedding"] = tp.task_embedding.detach().clone()
        return out

    @classmethod
    def universal(cls, configs: list[dict]) -> tuple[list[str], str] | None:
        tasks = [c["task"] for c in configs if c["index"] > 0]
        how = PCLSettings.model_validate(configs[0]["settings"]).universal if configs else "concat"
        return (tasks, how) if tasks else None

    @classmethod
    def serving_view(cls, base: LoadedBase, config: dict, tensors: dict, device) -> View | None:
        final = tensors.get("prompt.final")
        if final is None:
            return None  # T1
        s = PCLSettings.model_validate(config["settings"])
        want = _shape(s, int(config["max_length"]), base.backbone)
        if tuple(final.shape) != want:
            what = "the task's max_length" if s.prompt == "added" else "its prefix_length"
            raise LifelongrecError(
                f"task {config.get('task')}: its prompt is {list(final.shape)}, expected {list(want)} "
                f"({what} x the base's d{', one per block' if s.depth == 'deep' else ''})"
            )
        return _prompted(s, final.to(device))

    @classmethod
    def load_adapter(cls, base: LoadedBase, config: dict, tensors: dict, device: torch.device) -> TaskNet:
        s = PCLSettings.model_validate(config["settings"])
        net = super().load_adapter(base, config, tensors, device)
        if s.query != "sequence" or "prompt.final" not in tensors:
            return net
        sd = strip("prompt", tensors)
        tp = TaskPrompt(tuple(sd["prompt"].shape), s.task_dim, 0.0, len(sd["earlier_keys"]), base.backbone.d)
        tp.load_state_dict(sd)
        return TaskNet(ContextEncoder(base.backbone, tp.to(device).eval(), s), net.head, net.module, [])


class ContextEncoder(SequenceEncoder):
    """The backbone under a task whose contextual prompt depends on the user (query: sequence): the query
    reads the mean of the input item embeddings (frozen), so the view is built per batch."""

    def __init__(self, backbone: Backbone, tp: TaskPrompt, settings: PCLSettings) -> None:
        super().__init__(backbone)
        self.tp, self.settings = tp, settings

    def states(self, batch: Batch) -> torch.Tensor:
        items = batch["items"]
        context = pool(F.embedding(items, self.backbone.item_embedding.weight, padding_idx=0), items, "mean")
        return self.backbone.encode(items, _prompted(self.settings, self.tp.effective(True, context)))
