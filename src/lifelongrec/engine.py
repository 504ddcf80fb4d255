"""The one training and evaluation loop.

Everything that differs between tasks and methods lives in an `Objective` (its batches, its loss,
its evaluation); the engine only runs epochs: seeds, optimizer steps, validation, early stopping on
the task's own validation split with the best weights kept, JSONL metrics, and a checkpoint after
every epoch so that a run killed at any point (even kill -9) resumes where it stopped and ends with
exactly the weights an uninterrupted run would have: each epoch's batch order and dropout come from
seeds derived from (seed, epoch), not from state that a kill would lose.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn
from tqdm import tqdm

from . import distributed as dist
from .config import TrainConfig
from .device import generator, resolve_device
from .errors import ConfigError, LifelongrecError
from .fsutil import atomic_directory, sha256_bytes, write_bytes_atomic, write_json_atomic, write_text_atomic

logger = logging.getLogger("lifelongrec")

_THREADS_SET = False


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads once per process (changing it later costs a pool rebuild).

    Unset, it is OMP_NUM_THREADS where that is set (the usual way to share a machine between
    processes, which test workers and job schedulers use), else every core."""
    global _THREADS_SET
    n = n or _omp_threads() or os.cpu_count() or 1
    if not _THREADS_SET or torch.get_num_threads() != n:
        torch.set_num_threads(n)
        _THREADS_SET = True
    return n


class Objective(ABC):
    """One task as the engine sees it."""

    monitor: str = "MRR@5"  # validation metric to maximise

    @abstractmethod
    def module(self) -> nn.Module:
        """Everything whose weights are checkpointed (trainable or not)."""

    @abstractmethod
    def trainable(self) -> list[nn.Parameter]: ...

    @abstractmethod
    def train_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Any]: ...

    @abstractmethod
    def n_batches(self, batch_size: int) -> int: ...

    @abstractmethod
    def loss(self, batch: Any, gen: torch.Generator) -> tuple[torch.Tensor, int | torch.Tensor]:
        """Mean loss of the batch and the number of supervised positions in it (for tokens/s)."""

    @abstractmethod
    def evaluate(self, split: int) -> dict[str, float]: ...

    def on_fit_start(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once before training starts (after a resume has loaded the weights)."""

    def before_step(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called before every step's forward pass."""

    def after_step(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called after every optimizer step."""


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    # Training + validation seconds of the epochs done before a resume (by an earlier process), so that
    # a caller timing fit() with a wall clock can count the whole task.
    resumed_seconds: float = 0.0


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def make_adam(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel: on 2 CPU cores the default per-tensor loop took ~0.9 s per step for
    an 8M-parameter NextItNet, the fused kernel ~0.08 s (measured; see bench/RESULTS.md)."""
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a build without the fused CPU kernel
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31 - 1)


# ------------------------------------------------------------------ checkpoints (no pickle)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {f"{pid}.{k}": v.detach().clone() for pid, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write a safetensors file atomically; return its sha256 (recorded beside it, checked on load)."""
    blob = save_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    write_bytes_atomic(path, blob)
    return sha256_bytes(blob)


def load_tensors(path: Path, sha256: str | None, device: torch.device, remedy: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file written by save_tensors, verified against its recorded sha256: a damaged
    or truncated file is a one-line error naming it and saying what to do (`remedy`)."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise LifelongrecError(f"{path}: cannot be read ({e.strerror}); {remedy}") from None
    if sha256 is not None and sha256_bytes(blob) != sha256:
        raise LifelongrecError(f"{path}: damaged or truncated (sha256 differs from the one recorded); {remedy}")
    try:
        return {k: v.to(device) for k, v in load_bytes(blob).items()}
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise LifelongrecError(f"{path}: not a readable safetensors file ({e}); {remedy}") from None


def save_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    with atomic_directory(path) as d:
        model_sha = save_tensors(d / "model.safetensors", _state_tensors(module))
        opt_t, opt_meta = _optimizer_tensors(opt)
        opt_sha = save_tensors(d / "optimizer.safetensors", opt_t)
        write_json_atomic(d / "state.json", {**state, "optimizer": opt_meta, "sha256": [model_sha, opt_sha]})


def load_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, device: torch.device) -> dict:
    remedy = f"delete {path} to train this task again from its start"
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise LifelongrecError(f"{path / 'state.json'}: missing or not valid JSON; {remedy}") from None
    model_sha, opt_sha = state.pop("sha256", [None, None])  # checkpoints from before hashes were recorded
    module.load_state_dict(load_tensors(path / "model.safetensors", model_sha, device, remedy))
    _load_optimizer(opt, load_tensors(path / "optimizer.safetensors", opt_sha, device, remedy), state.pop("optimizer"))
    return state


# ------------------------------------------------------------------ the loop


def _better(a: float, b: float | None, lower: bool = False) -> bool:
    """Is validation score `a` better than the best so far `b` (higher is better; lower for a loss)?"""
    return b is None or (not math.isnan(a) and (a < b if lower else a > b))


# Training knobs that may differ between a run and its resume: when to stop and how fast to go.
RESUMABLE_CHANGES = {"epochs", "patience", "threads", "eval_batch_size", "device"}


def resume_key(train: TrainConfig, **rest: Any) -> dict:
    """What a checkpoint must have been trained with for a resume to continue the same run."""
    return {**rest, "train": train.model_dump(mode="json", exclude=RESUMABLE_CHANGES)}


def _check_resume(ckpt: Path, saved: dict | None, key: dict | None) -> None:
    if saved is None or key is None or saved == key:  # a checkpoint from before keys were stored: trust it
        return
    diff = []
    for part in sorted(set(saved) | set(key)):
        a, b = saved.get(part), key.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [
                f"{part}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            ]
        elif a != b:
            diff.append(f"{part}: {a!r} -> {b!r}")
    raise ConfigError(
        f"{ckpt}: this checkpoint was trained with other settings ({'; '.join(diff)}). Resume with the "
        f"settings it was started with (only {', '.join(sorted(RESUMABLE_CHANGES))} may change), or write "
        "to another --out"
    )


class _Step(nn.Module):
    """One training step's forward (the objective's loss) as a module, so that DistributedDataParallel
    can wrap it: DDP prepares its gradient all-reduce in forward and runs it during backward."""

    def __init__(self, obj: Objective, module: nn.Module) -> None:
        super().__init__()
        self.inner = module  # the parameters DDP synchronises
        self._objective = [obj]  # in a list: not registered as a submodule

    def forward(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, Any]:
        return self._objective[0].loss(batch, gen)


def _ddp(step: _Step, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # Not every trainable tensor takes part in every step (a method's extra losses, heads read on some
    # batches only): DDP must not wait for their gradients.
    return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)


def fit(obj: Objective, cfg: TrainConfig, run_dir: Path, log=logger.info, key: dict | None = None) -> FitResult:
    """Train `obj` with early stopping on validation; resume from `run_dir/checkpoint` if present.

    `key` (see resume_key) is stored in the checkpoint; a resume with a different key is refused
    instead of silently mixing two runs."""
    from .data.stream import TEST, VALID

    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    module = obj.module().to(device)
    opt = make_adam(obj.trainable(), cfg)
    ckpt, best_path = run_dir / "checkpoint", run_dir / "best.safetensors"
    state: dict[str, Any] = {
        "epoch": 0,
        "best": None,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
        "train_seconds": 0.0,
    }
    resumed_s = 0.0
    if (ckpt / "state.json").is_file():
        _check_resume(ckpt, json.loads((ckpt / "state.json").read_text()).get("resume_key"), key)
        state = load_checkpoint(ckpt, module, opt, device)
        log(f"resumed from {ckpt} after epoch {state['epoch']}")
        resumed_s = sum(h["train_seconds"] + h["eval_seconds"] for h in state["history"])
        write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in state["history"]))
    if key is not None:
        state["resume_key"] = key
    ranks = dist.world()
    main = dist.is_main()
    quiet = not sys.stderr.isatty() or not main
    n_batches = -(-obj.n_batches(cfg.batch_size) // ranks)
    step = _Step(obj, module) if ranks == 1 else _ddp(_Step(obj, module), device)
    run_step: Any = torch.compile(step, dynamic=True) if cfg.compile else step
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    obj.on_fit_start()
    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"] + 1
        seed = _epoch_seed(cfg.seed, epoch)
        # The batch order is the same on every rank (each takes its share); dropout and sampled
        # negatives differ per rank (rank 0 draws what one process draws).
        torch.manual_seed(seed + dist.rank())
        gen = generator(device, seed + dist.rank())
        rng = np.random.default_rng(seed)
        module.train()
        t0, tokens, total = time.perf_counter(), 0, 0.0
        batches = obj.train_batches(rng, cfg.batch_size)
        if ranks > 1:
            batches = iter(dist.my_share(list(batches)))
        bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}", disable=quiet, leave=False)
        for batch in bar:
            obj.before_step()
            with autocast:
                loss, n = run_step(batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            obj.after_step()
            n = int(n)  # a count, possibly a tensor on the device: one sync per step, after the update
            tokens += n
            total += loss.item() * n
        total, summed = dist.all_sum(total, tokens)
        tokens = int(summed)
        train_s = time.perf_counter() - t0
        module.eval()
        t1 = time.perf_counter()
        with torch.no_grad():
            valid = obj.evaluate(VALID)
        eval_s = time.perf_counter() - t1
        score = valid.get(obj.monitor, float("nan"))
        improved = _better(score, state["best"], lower=obj.monitor.endswith("loss"))
        if improved:
            if main:
                state["best_sha256"] = save_tensors(best_path, _state_tensors(module))
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["train_seconds"] += train_s
        entry = {
            "epoch": epoch,
            "train_loss": total / max(tokens, 1),
            "train_seconds": round(train_s, 3),
            "eval_seconds": round(eval_s, 3),
            "tokens": tokens,
            "tokens_per_s": round(tokens / train_s, 1),
            "valid": valid,
            "improved": improved,
            "elapsed_train_seconds": round(state["train_seconds"], 3),
            "peak_rss_mib": dist.per_rank(peak_rss_mib()),  # per process (rank), since it started
        }
        state["history"].append(entry)
        state["epoch"] = epoch
        if main:  # one writer; every rank holds the same weights (DDP keeps them equal)
            save_checkpoint(ckpt, module, opt, state)
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            log(
                f"epoch {epoch}: loss {entry['train_loss']:.4f}  valid {obj.monitor} {score:.4f}"
                f"{' *' if improved else ''}  {train_s:.1f}s train  {entry['tokens_per_s']:,.0f} tok/s"
            )
    dist.barrier()  # rank 0's files are written before anyone reads them
    if ranks > 1 and state["best"] is not None:
        state["best_sha256"] = json.loads((ckpt / "state.json").read_text()).get("best_sha256")
    remedy = f"delete {run_dir} to train this task again from its start"
    module.load_state_dict(load_tensors(best_path, state.get("best_sha256"), device, remedy))
    module.eval()
    with torch.no_grad():
        test = obj.evaluate(TEST)
    return FitResult(
        state["best_epoch"],
        state["history"][state["best_epoch"] - 1]["valid"],
        test,
        state["epoch"],
        state["history"],
        state["train_seconds"],
        resumed_s,
    )
