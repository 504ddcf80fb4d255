"""The knobs of a stream config that are not data: the input sequence (`sequence`), the backbone
(`model`) and training (`train`, `finetune`, a task's own `train`). Re-exported by config.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer

from .config_data import Filter, Strict, _omit_defaults


def check_train_fields(overrides: dict[str, Any], where: str) -> None:
    """Overrides of `train` (a `finetune` section, a task's `train`) name only TrainConfig's fields."""
    unknown = set(overrides) - set(TrainConfig.model_fields)
    if unknown:
        known = ", ".join(TrainConfig.model_fields)
        raise ValueError(f"{where}: unknown train fields {sorted(unknown)} (known: {known})")


class SequenceConfig(Strict):
    # Which events form the input sequence (ML: rating <= 3); a list keeps the events passing all of them.
    filter: Filter | list[Filter] | None = None
    min_length: int = Field(default=5, ge=1)  # users with fewer input events are dropped from every task
    max_length: int = Field(default=50, ge=1)  # the last max_length items are the model input
    # Items with fewer events (all events of kept users, any behaviour) leave the catalogue, the sequences
    # and the targets; users then shorter than min_length leave too, repeated until nothing changes (the
    # "5-core" of SASRec/BERT4Rec's ML-1M: min_item_count 5 gives their 3,416 items). 1 keeps every item.
    min_item_count: int = Field(default=1, ge=1)


class BackboneConfig(Strict):
    """The sequence backbone (see backbones/)."""

    name: Literal["nextitnet", "sasrec"] = "nextitnet"
    d: int = Field(default=64, ge=1)  # embedding size = hidden channels
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # NextItNet: one residual block per dilation (two causal convs, dilation r and 2r), kernel size.
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 4, 8] * 4)
    kernel_size: int = Field(default=3, ge=2)
    # SASRec: layers, heads, maximum positions.
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    inner_size: int | None = Field(default=None, ge=1)  # feed-forward width; None = d, as in the SASRec paper
    max_length: int = Field(default=200, ge=1)
    # SASRec block layout: "pre_ln" (x + Attn(LN(x)), then x + FFN(LN(x))) or "original", Kang and
    # McAuley's reference code (queries LN(x), keys/values x, residual from LN(x); then LN, FFN, residual).
    block: Literal["pre_ln", "original"] = "pre_ln"
    # None: item/position embeddings N(0, 1/d), PyTorch's default for the rest. A number: every weight
    # matrix N(0, init_std^2), biases zero (the SASRec PyTorch ports and RecBole use 0.02).
    init_std: float | None = Field(default=None, gt=0)


class TrainConfig(Strict):
    """Training knobs, used by the training commands."""

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    patience: int = Field(default=3, ge=1)  # epochs without a better validation metric before stopping
    # T1 loss: full softmax over all items, or sampled softmax with this fraction of items as negatives.
    loss: Literal["full", "sampled"] = "full"
    # Next-item training windows: only the last max_length items of each training sequence ("last",
    # as SASRec's own code), or the whole history cut into windows that overlap by one item, so every
    # item is a target exactly once per epoch ("all", the data RecBole's prefix samples cover).
    history: Literal["last", "all"] = "last"
    sampled_fraction: float = Field(default=0.2, gt=0, le=1)
    # Item recommendation tasks (T2, T3): Conure reports BPR with sampled negatives; full softmax is
    # the stronger and faster-converging choice here. Both are available.
    item_loss: Literal["full", "sampled", "bpr"] = "full"
    # Where the BPR and sampled-softmax negatives of item_rec tasks come from: uniform over the catalogue,
    # or "popularity", LambdaFM's static sampler as Conure trains T2/T3: every catalogue item ranked by its
    # count among the task's training targets (most frequent first, r = 0, 1, ...; ties by item id) and
    # drawn with p(j) ∝ exp(-(r_j + 1) / (rho * N)), N = catalogue size (heads.popularity_negatives).
    negatives: Literal["uniform", "popularity"] = "uniform"
    popularity_rho: float = Field(default=0.3, gt=0)  # rho of the popularity sampler (Conure: 0.3)
    # The user vector a task's head reads: the state at the last position (the paper's) or the mean over
    # the history's positions, which can carry more of a profile than the next-item state does. A
    # next_item task (T1) always reads the last state: it is trained to predict at every position.
    pooling: Literal["last", "mean"] = "last"
    # How many of the user's latest input items an example reads (None: sequence.max_length). A profile
    # is spread over the whole history, so a profile task may read more than the item tasks do.
    input_length: int | None = Field(default=None, ge=1)
    # Profile tasks: "balanced" weighs each class by n / (classes x its count) in the cross-entropy (the
    # positive class of a binary task by negatives / positives), so the majority class is no free lunch.
    class_weight: Literal["none", "balanced"] = "none"
    # A new task's head starts with zero bias (the paper's), or with the log prior of the task's training
    # targets (item or class frequencies, add-one smoothed; ours): the head then starts at the most
    # popular items or the majority class and learns what the user vector adds. Item tasks take one
    # step per batch of users, so a zero bias can stay far from popularity for a whole budget.
    head_bias: Literal["zero", "log_prior"] = "zero"
    # What batch_size counts in an item_rec task, whose users have many targets each (ML-1M's T2: 48 on
    # average). users: batch_size users with all their targets per step. targets: whole users packed
    # until the batch holds about batch_size targets, the unit of Conure's "batch 512" for T2/T3: ~48x
    # more steps per epoch on ML-1M. Either way each user's input is encoded once per epoch.
    item_batch: Literal["users", "targets"] = "users"
    eval_batch_size: int = Field(default=1024, ge=1)
    # Training batches are random, then sorted by length within groups of this many batches, so a batch
    # of similar lengths can drop its all-padding columns (faster). 1 = plain random batches: slower on
    # skewed lengths, but every batch mixes short and long histories.
    length_buckets: int = Field(default=64, ge=1)
    # Early stopping watches this validation metric (MRR@k, NDCG@k, HR@k; accuracy for classification).
    monitor: str = "MRR@5"
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    # Ranking protocol: exact full ranking (default), or sampled with this many negatives (labelled).
    sampled_eval_negatives: int | None = None
    # Remove the items a user has already interacted with from the candidates (full ranking only).
    exclude_seen: bool = False
    threads: int | None = None  # torch threads; default: $OMP_NUM_THREADS, else all cores
    # Where to compute: auto (CUDA when available, else CPU), cpu, cuda, cuda:N, mps.
    device: str = "auto"
    # Training steps under bf16 autocast (matmuls and convolutions in bfloat16, losses and weights in
    # float32); evaluation always runs in float32. And torch.compile of the training step (dynamic
    # shapes: batches are trimmed to their longest row). Both off by default: see bench/RESULTS.md
    # ("Mixed precision and torch.compile") for what they do to speed and metrics here.
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(
            handler(self),
            {
                "negatives": "uniform",
                "popularity_rho": 0.3,
                "pooling": "last",
                "class_weight": "none",
                "input_length": None,
                "head_bias": "zero",
                "item_batch": "users",
            },
        )
