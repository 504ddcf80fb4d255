"""The stream runner: learn the tasks in order with one method, measure what is kept and lost.

After each task every task learned so far is evaluated on its test split, filling row i of the
accuracy matrix R (metric of task j after learning task i; each task kind's objective names its
metric: MRR@5 for item tasks, accuracy for profile tasks, AUC for binary ones). The run folder holds
everything a report, predict or serve needs, written atomically:

    config.json         the resolved stream config          run.json      method, order, status
    metrics.jsonl       one line per learned task           matrix.csv    R, one row per learned task
    summary.json        final/average/forgetting/BWT + parameters, bytes and seconds per task
    base/, adapters/<T>/  the shared base once, and what each task adds (see adapters.py)
    tasks/<T>/          training checkpoints and per-epoch metrics
    state/              the method's weights after the last completed task (resume point)

The run is open: its task log only grows. `add_task` learns one more task on a finished run, with
its method, leaving every earlier task's adapter as it was.

Resume: `run_stream(..., resume=True)` replays the method's structure for the completed tasks, loads
its saved weights, and continues; the engine resumes a half-trained task from its own checkpoint.
The runner never names a method: it reaches them through the registry and the method contract.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch

from . import __version__
from . import distributed as dist
from .adapters import FORMAT_VERSION, read_run_json
from .config import StreamConfig, TaskConfig
from .data.prepare import open_stream
from .data.stream import TEST
from .engine import FitResult, fit, load_tensors, resume_key, save_tensors, set_threads
from .errors import ConfigError, LifelongrecError
from .fsutil import (
    atomic_directory,
    clean_stale_temporaries,
    exclusive_lock,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)
from .methods import TaskInfo, build_method
from .objectives import objective_class, objective_for
from .runfiles import export_run, write_reports
from .tasknet import TaskNet

RUN_VERSION = FORMAT_VERSION
logger = logging.getLogger("lifelongrec")


def task_metric(kind: str, cfg: StreamConfig) -> str:
    return objective_class(kind).report_metric(cfg.train)


def _order(cfg: StreamConfig, order: list[str] | None) -> list[str]:
    names = [t.name for t in cfg.tasks]
    order = order or names
    unknown = [t for t in order if t not in names]
    if unknown:
        raise ConfigError(f"--order: unknown task(s) {unknown} (this stream has: {', '.join(names)})")
    if len(set(order)) != len(order):
        raise ConfigError(f"--order: a task appears twice in {order}")
    return order


def _load_pretrained(net, init_from: Path, cfg: StreamConfig, stream, task: str) -> dict:
    """Put a `lifelongrec pretrain` artifact's weights into the first task's network."""
    from .artifacts import load_backbone, read_backbone_meta

    meta = read_backbone_meta(init_from)
    problems = []
    if meta.get("vocab_hash") != stream.manifest["vocab_hash"]:
        problems.append("its item vocabulary differs from this stream's")
    if meta.get("model") != cfg.model.model_dump(mode="json"):
        problems.append(
            f"its model config {meta.get('model')} differs from this run's {cfg.model.model_dump(mode='json')}"
        )
    if meta.get("task") != task or meta.get("max_length") != cfg.sequence.max_length:
        problems.append(f"it was trained on task {meta.get('task')} with max_length {meta.get('max_length')}")
    if problems:
        raise LifelongrecError(f"--init-from {init_from}: " + "; ".join(problems))
    missing = [k for k in ("best_epoch", "valid", "test", "epochs_run", "train_seconds") if k not in meta]
    if missing:
        raise LifelongrecError(f"--init-from {init_from}/backbone.json: missing {missing} (not a finished pretrain)")
    backbone, head, _ = load_backbone(init_from)
    # The first task's network names its backbone and head `backbone` and `head` (the method contract).
    target = net.module["backbone"]
    have, sd = target.state_dict(), backbone.state_dict()
    missing = [k for k in have if k not in sd]
    if missing:
        raise LifelongrecError(f"--init-from {init_from}: weights missing for {missing[:3]}")
    target.load_state_dict(sd)
    net.module["head"].load_state_dict(head.state_dict())
    return meta


def run_stream(
    cfg: StreamConfig,
    method_name: str,
    out: Path,
    order: list[str] | None = None,
    resume: bool = False,
    log=logger.info,
    init_from: Path | None = None,
    branch_from: Path | None = None,
) -> dict:
    """Learn `order` with `method_name` into `out` (see the module docstring). The run folder is locked
    for the whole call: a second process writing to it gets an error naming this one's pid."""
    out.mkdir(parents=True, exist_ok=True)
    if not dist.is_main():  # under torchrun: rank 0 holds the lock and writes; the others compute beside it
        dist.barrier()
        return _run_stream(cfg, method_name, out, order, resume, log, init_from, branch_from)
    with exclusive_lock(out, "run folder"):
        clean_stale_temporaries(out)  # what a killed atomic write left behind
        dist.barrier()
        return _run_stream(cfg, method_name, out, order, resume, log, init_from, branch_from)


def _run_stream(
    cfg: StreamConfig,
    method_name: str,
    out: Path,
    order: list[str] | None,
    resume: bool,
    log,
    init_from: Path | None,
    branch_from: Path | None,
) -> dict:
    if not resume and branch_from is None and (out / "run.json").is_file():
        raise LifelongrecError(f"{out}: already holds a run; continue it with --resume {out}, or choose another --out")
    cfg = cfg.for_method(method_name)
    set_threads(cfg.train.threads)
    stream, prepared = open_stream(cfg)
    order = _order(cfg, order)
    kinds = {t.name: t.kind for t in cfg.tasks}
    out.mkdir(parents=True, exist_ok=True)
    state_dir = out / "state"
    dist.barrier()  # every rank has checked the folder before rank 0 writes to it
    if branch_from is not None and dist.is_main():
        _branch(branch_from, out, cfg, method_name, order)
    dist.barrier()
    origin = {}  # where the run started from: kept in run.json across resumes
    if resume:
        run = read_run_json(out)
        # The task log only grows: a resume may append tasks to the order, never change what is there.
        if run["method"] != method_name or order[: len(run["order"])] != run["order"]:
            raise LifelongrecError(f"{out}: was run with method {run['method']} and order {run['order']}")
        origin = {k: run[k] for k in ("init_from", "branched_from") if k in run}
    if init_from is not None:
        origin["init_from"] = str(init_from)
    if branch_from is not None:
        origin["branched_from"] = str(branch_from)
    # run.json first, holding the resolved config too: from the moment it exists, `--resume` can
    # restart the run whatever else a kill left half-written.
    run = {
        "version": RUN_VERSION,
        "lifelongrec_version": __version__,
        "method": method_name,
        "order": order,
        "stream": cfg.name,
        "vocab_hash": stream.manifest["vocab_hash"],
        "status": "running",
        **origin,
        "config": cfg.model_dump(mode="json", by_alias=True),
    }
    dist.barrier()  # every rank has read run.json before rank 0 rewrites it
    if dist.is_main():
        write_json_atomic(out / "run.json", run)
        write_json_atomic(out / "config.json", run["config"])
        write_bytes_atomic(out / "items.parquet", (prepared / "items.parquet").read_bytes())  # for predict

    method = build_method(method_name, cfg, stream)
    done: dict = {"rows": [], "R": []}
    if (resume or branch_from is not None) and (state_dir / "state.json").is_file():
        done = read_json(state_dir / "state.json", "the run's resume state (written after each learned task)")
        rows, R = done.get("rows"), done.get("R")
        if not (
            isinstance(rows, list)
            and isinstance(R, list)
            and len(rows) == len(R) <= len(order)
            and all(isinstance(r, dict) and r.get("task") == order[i] for i, r in enumerate(rows))
            and isinstance(done.get("method"), dict)
        ):
            raise LifelongrecError(
                f"{state_dir / 'state.json'}: not the resume state of this run (damaged, or another order); "
                f"delete {state_dir} to relearn the run from its first task"
            )
        for i, name in enumerate(order[: len(done["rows"])]):  # rebuild the structure, then load weights
            info = TaskInfo(name, kinds[name], i)
            method.before_task(info)
            method.after_task(info)
        remedy = f"the run's resume state is damaged: delete {state_dir} to relearn the run from its first task"
        method.module().load_state_dict(
            load_tensors(state_dir / "method.safetensors", done.get("method_sha256"), method.device, remedy)
        )
        method.load_extra_state(done["method"])
        log(f"resumed {out}: {len(done['rows'])} of {len(order)} tasks already learned")

    net: TaskNet | None  # a task's network, then each further phase's (None when the task is learned)
    already = len(done["rows"])
    for i in range(already, len(order)):
        name = order[i]
        info = TaskInfo(name, kinds[name], i)
        cfg_i = cfg.model_copy(update={"train": cfg.train_for(i, name)})
        net = method.before_task(info)
        obj = objective_for(stream, name, net, cfg_i)
        n_trainable = sum(p.numel() for p in net.params)
        log(f"[{method_name}] task {i + 1}/{len(order)} {name} ({info.kind}): {n_trainable:,} trainable parameters")
        key = resume_key(
            cfg_i.train,
            method=method_name,
            task=name,
            model=cfg.model.model_dump(mode="json"),
            method_config=cfg.method.model_dump(mode="json") if cfg.method else None,
            vocab_hash=stream.manifest["vocab_hash"],
            sequence=cfg.sequence.model_dump(mode="json", by_alias=True),
        )
        t0 = time.perf_counter()
        if i == 0 and init_from is not None:  # the same pretrained T1 model for every method
            pre = _load_pretrained(net, init_from, cfg, stream, name)
            res = FitResult(pre["best_epoch"], pre["valid"], pre["test"], pre["epochs_run"])
            t0 -= pre["train_seconds"]
            log(f"[{method_name}] {name} loaded from {init_from} (trained in {pre['train_seconds']:.0f} s)")
        else:
            obj.require_examples()
            res = fit(obj, method.phase_train(info, 0, cfg_i.train), out / "tasks" / name / "train", log=log, key=key)
            t0 -= res.resumed_seconds  # epochs an interrupted earlier process already spent on this task

        def evaluate(n, name=name, cfg_i=cfg_i):
            # A method's mid-task measurement (Conure-): inference mode, whatever mode training left
            # (a T1 loaded with --init-from never went through fit(), so dropout would still be on).
            method.module().eval()
            n.module.eval()
            with torch.no_grad():
                return objective_for(stream, name, n, cfg_i).evaluate(TEST)

        phase = 1  # further phases a method asks for (Conure: retrain after pruning)
        while (net := method.next_phase(info, evaluate)) is not None:
            log(f"[{method_name}] {name}: phase {phase + 1}")
            t0 -= fit(
                objective_for(stream, name, net, cfg_i),
                method.phase_train(info, phase, cfg_i.train),
                out / "tasks" / name / f"phase{phase}",
                log=log,
                key={**key, "phase": phase},
            ).resumed_seconds
            phase += 1
        train_s = time.perf_counter() - t0
        method.after_task(info)
        method.module().eval()
        row, cells = [], {}
        for j, prev in enumerate(order[: i + 1]):
            cfg_j = cfg.model_copy(update={"train": cfg.train_for(j, prev)})
            with torch.no_grad():
                m = objective_for(stream, prev, method.task_net(prev), cfg_j).evaluate(TEST)
            row.append(float(m[task_metric(kinds[prev], cfg)]))
            cells[prev] = m
        entry = {
            "task": name,
            "index": i,
            "kind": info.kind,
            "metric": task_metric(info.kind, cfg),
            "trainable_parameters": n_trainable,
            "added_bytes": None,  # filled from the files export_run writes (the base counts with the first task)
            "train_seconds": round(train_s, 2),
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "valid": res.best_valid,
            "test_after": cells,
            **({"phase_metrics": method.phase_metrics(name)} if method.phase_metrics(name) else {}),
        }
        done["rows"].append(entry)
        done["R"].append(row)
        done["method"] = method.extra_state()
        if dist.is_main():  # under torchrun rank 0 writes; every rank holds the same weights
            _record(out, method, cfg, stream, order, done, entry, name, state_dir)
        dist.barrier()
        log(f"[{method_name}] after {name}: " + "  ".join(f"{order[j]} {v:.4f}" for j, v in enumerate(row)))
    if already and already == len(order) and dist.is_main():
        # Nothing was learned in this call (a finished run resumed): derive every output again from the
        # resume state, which repairs a damaged or deleted matrix, summary or adapter.
        sizes = export_run(out, method, cfg, stream, done["rows"])
        write_reports(out, order, done, method, sizes)
    run["status"] = "complete"
    if dist.is_main():
        write_json_atomic(out / "run.json", run)
    dist.barrier()
    return read_json(out / "summary.json", "the run's summary")


def _record(out: Path, method, cfg: StreamConfig, stream, order: list[str], done: dict, entry: dict, name: str,
            state_dir: Path) -> None:  # fmt: skip
    """A learned task's files: adapters, reports, and the resume state (written last: its completion mark)."""
    sizes = export_run(out, method, cfg, stream, done["rows"])
    entry.update(sizes[name])
    # What learning this task added to the run's stored tensors: its adapter (the base too, with the
    # first task), plus whatever it added to earlier adapters (mptrec_faithful's stage 1 gives T1 an
    # expert) or to the base.
    stored = sizes["_base"]["base_bytes"] + sum(v["adapter_bytes"] for k, v in sizes.items() if k != "_base")
    before = done.get("stored_bytes", sum(r["added_bytes"] for r in done["rows"][:-1]))
    entry["added_bytes"] = stored - before
    done["stored_bytes"] = stored
    write_reports(out, order, done, method, sizes)
    with atomic_directory(state_dir) as d:
        done["method_sha256"] = save_tensors(d / "method.safetensors", method.module().state_dict())
        write_json_atomic(d / "state.json", done)


# What a branch must share with the run it starts from; `train` and `finetune` may differ (seeds,
# learning rates of the tasks still to learn are what a branch experiment varies).
_BRANCH_SHARED = ("source", "sequence", "split", "tasks", "model", "method")


def _branch(src: Path, out: Path, cfg: StreamConfig, method_name: str, order: list[str]) -> None:
    """Start `out` from the learned prefix of the run in `src`: its state and task folders are copied,
    and the run continues as a resume. One Conure T1 (prune + retrain, the longest step) can so be
    shared by every seed and task order of an experiment."""
    if (out / "run.json").is_file():
        raise LifelongrecError(f"--branch-from: {out} already holds a run; resume it with --resume {out}")
    state = src / "state" / "state.json"
    if not (src / "run.json").is_file() or not state.is_file():
        raise LifelongrecError(f"--branch-from {src}: not a stream run folder with at least one learned task")
    run = read_run_json(src)
    learned = [r["task"] for r in read_json(state, "the run's resume state").get("rows", [])]
    problems = []
    if run["method"] != method_name:
        problems.append(f"it was run with method {run['method']}, not {method_name}")
    if order[: len(learned)] != learned or len(learned) >= len(order):
        problems.append(f"its learned tasks {learned} are not a proper prefix of the order {order}")
    theirs = run.get("config") or read_json(src / "config.json", "the run's resolved stream config")
    ours = cfg.model_dump(mode="json", by_alias=True)
    differ = [k for k in _BRANCH_SHARED if theirs.get(k) != ours.get(k)]
    if differ:
        problems.append(f"its config differs in {differ}")
    if problems:
        raise LifelongrecError(f"--branch-from {src}: " + "; ".join(problems))
    for name in learned:
        shutil.copytree(src / "tasks" / name, out / "tasks" / name, dirs_exist_ok=True)
    with atomic_directory(out / "state") as d:
        for f in ("method.safetensors", "state.json"):
            shutil.copy2(src / "state" / f, d / f)


def add_task(out: Path, task: TaskConfig | str, log=logger.info) -> dict:
    """Learn one more task on a finished run, with the run's method, without touching earlier tasks.

    `task` is a task of the run's config not learned yet (its name), or a new TaskConfig, which is
    added to the run's config; the item vocabulary must stay the same."""
    run = read_run_json(out)
    if run.get("status") != "complete":
        raise LifelongrecError(f"{out}: the run is not finished; resume it first (stream run --resume {out})")
    cfg = StreamConfig.model_validate(run.get("config") or read_json(out / "config.json", "the run's stream config"))
    name = task if isinstance(task, str) else task.name
    if name in run["order"]:
        raise LifelongrecError(f"{out}: task {name} is already learned in this run")
    if isinstance(task, TaskConfig):
        if any(t.name == name for t in cfg.tasks):
            raise LifelongrecError(f"{out}: the run's config already has a task named {name}")
        data = cfg.model_dump(mode="json", by_alias=True)
        data["tasks"].append(task.model_dump(mode="json", by_alias=True, exclude_none=True))
        cfg = StreamConfig.model_validate(data)
    stream, _ = open_stream(cfg)
    if stream.manifest["vocab_hash"] != run["vocab_hash"]:
        raise LifelongrecError(f"task {name}: with it the stream's item vocabulary differs from the run's")
    return run_stream(cfg, run["method"], out, [*run["order"], name], resume=True, log=log)
