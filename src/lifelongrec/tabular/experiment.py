"""MPT-Rec's experiment (its Table 5 question) on a tabular config: stage 1 learns the pre-training
tasks jointly, then each method learns the new task, and the result is the new task's test AUC beside
what it cost: trainable parameters (and their share of full retraining), FLOPs of one training step,
seconds of training. Methods for the new task:

- mptrec: prompt tuning over a frozen stage-1 MPT-Rec (tabular/mptrec.py);
- shared_bottom*, mmoe*, ple*: the baseline's stage-1 model frozen, its new parts trained;
- single_task: a model of the new task alone, every part its own;
- full_retraining: an MPT-Rec stage-1 model over all tasks, trained jointly from scratch (the
  denominator of "% of parameters", embeddings included, as the authors count).

Stage-1 models are trained once per seed and method family; after the new task, the old tasks' test
scores are recomputed and compared with those before it, bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..fsutil import write_json_atomic
from .config import TabularConfig
from .data import TEST, TabularData
from .models import PLE, MMoE, MultiTask, NewTaskOnFrozen, SharedBottom, SingleTask
from .mptrec import MPTRec, MPTRecNewTask
from .train import train_model

NEW_TASK_METHODS = ("mptrec", "shared_bottom*", "mmoe*", "ple*", "single_task", "full_retraining")


def n_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def step_flops(model: MultiTask, obj, batch_size: int) -> int:
    """FLOPs of one training step (forward and backward of the loss) on one batch (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = obj.batch(np.arange(min(batch_size, len(obj.train_rows))), 0.0)
    model.train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = obj.loss(batch, torch.Generator())
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _stage1(name: str, data: TabularData, cfg: TabularConfig, tasks: list[str]) -> MultiTask:
    cards, m = data.cardinalities, cfg.model
    if name == "mptrec":
        return MPTRec(cards, m, tasks, len(data.rows(0)))
    if name == "shared_bottom*":
        return SharedBottom(cards, m, tasks)
    if name == "mmoe*":
        return MMoE(cards, m, tasks)
    return PLE(cards, m, tasks)


def _fit(data, model, cfg: TabularConfig, seed: int, out: Path) -> dict:
    train = cfg.train.model_copy(update={"seed": seed})
    t0 = time.perf_counter()
    key = {"config": cfg.model_dump(mode="json", exclude={"train"}), "model": type(model).__name__}
    result, obj = train_model(data, model, cfg.mptrec, train, out, key=key)
    return {
        "test": {k.removeprefix("AUC_"): v for k, v in result.test.items() if k != "AUC_sum"},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.train_seconds, 3),  # every epoch, across resumes
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "trainable_parameters": n_params(model, trainable_only=True),
        "parameters": n_params(model),
        "flops_per_step": step_flops(model, obj, train.batch_size),
        "_obj": obj,
    }


def run_seed(cfg: TabularConfig, data: TabularData, seed: int, out: Path, methods: list[str]) -> dict:
    """Every method's new-task results for one seed (stage-1 models trained into out/<family>/stage1)."""
    res: dict[str, dict] = {}
    new = cfg.new_tasks
    for name in methods:
        torch.manual_seed(seed)
        if name == "single_task":
            res[name] = {
                t: strip(_fit(data, SingleTask(data.cardinalities, cfg.model, t), cfg, seed, out / name / t))
                for t in new
            }
            continue
        if name == "full_retraining":
            model = MPTRec(data.cardinalities, cfg.model, [t.name for t in cfg.tasks], len(data.rows(0)))
            r = strip(_fit(data, model, cfg, seed, out / name))
            res[name] = {t: r for t in new}
            continue
        base = _stage1(name, data, cfg, cfg.pretrain)
        stage1 = _fit(data, base, cfg, seed, out / name / "stage1")
        before = stage1["_obj"].scores(TEST)
        res[name] = {"stage1": strip(stage1)}
        for t in new:
            torch.manual_seed(seed)
            head: MultiTask
            if isinstance(base, MPTRec):
                head = MPTRecNewTask(base, cfg.model, cfg.mptrec, t)
            else:
                head = NewTaskOnFrozen(base, cfg.model, t)
            r = _fit(data, head, cfg, seed, out / name / t)
            if isinstance(head, MPTRecNewTask) and head.last_attention is not None:
                a = head.last_attention.clamp(min=1e-12)
                r["attention_entropy"] = float(-(a * a.log()).sum(1).mean())  # log T when uniform
            after = stage1["_obj"].scores(TEST)
            r["old_tasks_unchanged"] = all(np.array_equal(before[k], after[k]) for k in before)
            res[name][t] = strip(r)
    return res


def strip(r: dict) -> dict:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def run_experiment(
    cfg: TabularConfig, data: TabularData, seeds: list[int], out: Path, methods: list[str] | None = None
) -> dict:
    methods = list(methods or NEW_TASK_METHODS)
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = run_seed(cfg, data, seed, out / f"seed-{seed}", methods)
        write_json_atomic(out / "results.json", {"config": cfg.model_dump(mode="json"), "seeds": per_seed})
    return {"config": cfg.model_dump(mode="json"), "seeds": per_seed, "unknown": data.unknown}
