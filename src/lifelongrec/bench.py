"""`lifelongrec bench`: every method on one stream, same splits, seeds and budgets, one report.

For each seed, T1 is pretrained once (`<out>/seed-<s>/T1`, the `lifelongrec pretrain` artifact) and
every method starts its stream from it (`--init-from`), so the methods differ only in how they learn
the tasks after T1 (Conure still prunes and retrains its copy of T1). Runs are resumable: a finished
run is read, an interrupted one resumed, a missing one started. The report (`<out>/report.md`,
`<out>/bench.json`) gives per method and task the mean +- standard deviation over seeds of the final
metric, the reference rows (the most popular items and a ridge regression from the bag of the user's
items for item tasks, the majority class and a logistic regression on that bag for profile tasks;
references.py), backbones stored, trainable parameters, bytes added and
training seconds per task, forgetting and BWT, and a paired t-test of each method against STL per task
(over seeds; scipy), plus each method's heatmaps for the first seed.

Methods join by name: `--methods` takes any registered method (default: every built-in one).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from . import distributed as dist
from .config import StreamConfig, load_config
from .continual import by_metric
from .data.prepare import open_stream
from .errors import LifelongrecError
from .fsutil import read_json, write_json_atomic, write_text_atomic
from .methods.registry import BUILTIN, method_class
from .report import fmt_bytes, heatmaps, read_run
from .significance import mcnemar_greater, paired_t_test

logger = logging.getLogger("lifelongrec")
REFERENCE_METHOD = "stl"  # every method is tested against full finetuning per task, as Conure's Table 2 compares


def _seed_config(cfg: StreamConfig, seed: int) -> StreamConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})


def _pretrained(cfg: StreamConfig, stream, out: Path) -> Path:
    from .pretrain import pretrain

    meta = out / "backbone.json"
    if not meta.is_file():
        logger.info(f"bench: pretraining T1 into {out}")
        pretrain(cfg, stream, out)
    return out


def _learn(cfg: StreamConfig, method: str, out: Path, init_from: Path) -> Path:
    from .runner import run_stream

    run = out / "run.json"
    if run.is_file():
        held = read_json(run, "a stream run's run.json")
        want = cfg.for_method(method).model_dump(mode="json", by_alias=True)
        if held.get("config") != want:
            raise LifelongrecError(
                f"{out}: holds a {method} run with other settings than this bench asks for (code or config "
                "changed since); use another --out, or delete that run to learn it again"
            )
        if held.get("status") == "complete":
            return out
    logger.info(f"bench: {method} -> {out}")
    run_stream(cfg, method, out, resume=run.is_file(), init_from=init_from)
    return out


def parse_variant(spec: str) -> tuple[str, str, list[str]]:
    """`conure` or a variant with its own settings, `conure:budget=per_phase,retrain_share=0.3`:
    (label, method name, `method.<key>=<value>` overrides). The label names the variant's folder."""
    name, _, rest = spec.partition(":")
    sets = [f"method.{kv.strip()}" for kv in rest.split(",") if kv.strip()] if rest else []
    bad = [kv for kv in sets if "=" not in kv]
    if bad:
        raise LifelongrecError(f"--methods {spec}: expected METHOD or METHOD:key=value[,key=value]")
    label = name + "".join("_" + kv[len("method.") :].replace("=", "-") for kv in sets)
    label = "".join(c if c.isalnum() or c in "_-." else "-" for c in label)
    return label, name, sets


def run_bench(
    config: str | Path,
    out: Path,
    methods: list[str] | None = None,
    seeds: int = 3,
    overrides: list[str] | None = None,
    only_seed: int | None = None,
) -> dict | None:
    """Learn the stream with every method for `seeds` seeds (resumable) and write the report.

    `only_seed` learns that one seed's runs and writes no report (None returned): seeds can then be
    spread over processes or machines sharing `out`; a later call without it reads them and reports.
    Each run folder is locked, so two processes never learn the same run."""
    variants = [parse_variant(m) for m in (methods or list(BUILTIN))]
    for _, name, sets in variants:
        method_class(name)  # an unknown name fails here, before any training
        load_config(config, [*(overrides or []), *sets], method=name)  # and so does a bad setting
    if seeds < 1:
        raise LifelongrecError(f"--seeds {seeds}: give at least one seed")
    if only_seed is not None and not 0 <= only_seed < seeds:
        raise LifelongrecError(f"--only-seed {only_seed}: expected a seed from 0 to {seeds - 1} (--seeds {seeds})")
    t0 = time.perf_counter()
    base_cfg = load_config(config, overrides or [])
    stream, _ = open_stream(base_cfg)
    runs: dict[str, list[Path]] = {label: [] for label, _, _ in variants}
    for seed in range(seeds) if only_seed is None else [only_seed]:
        t1 = _pretrained(_seed_config(base_cfg, seed), stream, out / f"seed-{seed}" / "T1")
        for label, name, sets in variants:
            cfg = _seed_config(load_config(config, [*(overrides or []), *sets], method=name), seed)
            runs[label].append(_learn(cfg, name, out / f"seed-{seed}" / label, t1))
    if only_seed is not None or not dist.is_main():  # under torchrun, rank 0 writes the report
        return None
    from .references import reference_rows

    refs = reference_rows(stream, base_cfg)
    result = summarise(runs, refs)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result["compute_seconds"] = compute_seconds(runs)
    result["config"] = str(config)
    result["overrides"] = list(overrides or [])
    write_json_atomic(out / "bench.json", result)
    text = render(result)
    hours = result["compute_seconds"] / 3600
    body = [
        f"# Bench: {base_cfg.name}, {seeds} seed(s)",
        "",
        text,
        "",
        f"Training time of the whole bench: {hours:.1f} h of training loops (T1 once per seed, every "
        f"method's later tasks, Conure's retraining of T1), whatever the number of processes; this call "
        f"took {result['wall_seconds']:.0f} s.",
        "",
    ]
    for label in runs:
        for p in heatmaps(read_run(runs[label][0]), out):
            body.append(f"![{p.stem}]({p.name})")
    write_text_atomic(out / "report.md", "\n".join(body) + "\n")
    return result


def compute_seconds(runs: dict[str, list[Path]]) -> float:
    """Training seconds of the whole bench, however many processes shared it (wall time then says
    little): each seed's T1 pretraining once, every run's tasks after the first, and what a method spent
    on T1 beyond the pretraining it loaded (Conure's pruning and retraining)."""
    total, t1s = 0.0, {}
    for paths in runs.values():
        for p in paths:
            if p.parent not in t1s:  # each seed's T1 counted (and read) once
                meta = read_json(p.parent / "T1" / "backbone.json", "a pretrained T1")
                t1s[p.parent] = float(meta.get("train_seconds", 0.0))
                total += t1s[p.parent]
            t1 = t1s[p.parent]
            secs = [float(x) for x in read_run(p)["summary"]["train_seconds"]]
            total += (sum(secs[1:]) + max(0.0, secs[0] - t1)) if secs else 0.0
    return round(total, 1)


def _stat(values: list[float] | list[float | None]) -> dict:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": values}
    std = float(np.std(v, ddof=1)) if len(v) > 1 else None
    return {"mean": float(np.mean(v)), "std": std, "n": len(v), "values": values}


def _bwt(groups: dict[str, dict], kind: str) -> float | None:
    """A seed's BWT over the tasks of one metric; None where it has none (JSON holds no NaN)."""
    v = groups.get(kind, {}).get("bwt")
    return None if v is None else float(v)


def _neg(v: float | None) -> float | None:
    return None if v is None else -v


def summarise(runs: dict[str, list[Path]], refs: dict[str, dict[str, dict]]) -> dict:
    """Per method: mean/std over seeds of each task's final metric, forgetting, costs; tests vs STL."""
    rows: dict[str, dict] = {}
    tasks: list[str] = []
    metrics: dict[str, str] = {}
    for m, paths in runs.items():
        seeds = [read_run(p) for p in paths]
        order = seeds[0]["order"]
        tasks += [t for t in order if t not in tasks]
        finals: dict[str, list[float]] = {t: [] for t in order}
        for r in seeds:
            last = r["R"][len(r["summary"]["tasks"]) - 1]
            for j, t in enumerate(r["order"]):
                finals[t].append(float(last[j]))
            metrics.update(zip(r["summary"]["tasks"], r["summary"]["metrics"]))
        s0 = seeds[0]["summary"]
        # forgetting and BWT per metric: a mean over MRR@5 and accuracy would be the accuracies'
        groups = [by_metric(r["summary"]["final"], r["summary"]["forgetting"], r["summary"]["metrics"]) for r in seeds]
        kinds = list(dict.fromkeys(k for g in groups for k in g))
        rows[m] = {
            "final": {t: _stat(v) for t, v in finals.items()},
            "forgetting_mean": {k: _stat([_neg(_bwt(g, k)) for g in groups]) for k in kinds},
            "bwt": {k: _stat([_bwt(g, k) for g in groups]) for k in kinds},
            "backbones_stored": s0["backbones_stored"],
            "trainable_parameters": s0["trainable_parameters"],
            "added_bytes": s0["added_bytes"],
            "train_seconds": _stat([float(np.mean(r["summary"]["train_seconds"])) for r in seeds]),
            "complete": all(r["summary"]["complete"] for r in seeds),
            # profile tasks: per seed, the discordant pairs against the majority class (None: not recorded)
            "vs_majority_counts": {t: [_discordant(r, t) for r in seeds] for t in order},
            # a method's phase metrics the report shows (Conure-: each task before pruning), over seeds
            "phases": {
                f"{m}- ({label})": {t: _stat([r["phases"][key].get(t, math.nan) for r in seeds]) for t in order}
                for key, label in s0.get("report_phases", {}).items()
            },
        }
    tests: dict[str, dict[str, dict]] = {}
    ref = rows.get(REFERENCE_METHOD)
    if ref is not None:
        for m, row in rows.items():
            if m == REFERENCE_METHOD:
                continue
            tests[m] = {}
            for t, st in row["final"].items():
                a, b = st["values"], ref["final"].get(t, {}).get("values", [])
                if len(a) == len(b) >= 2:
                    tests[m][t] = paired_t_test(a, b)
    return {
        "tasks": tasks,
        "metrics": metrics,
        "methods": rows,
        "references": refs,
        "vs_" + REFERENCE_METHOD: tests,
        "vs_majority": _versus_majority(rows, refs, metrics),
    }


def _discordant(run: dict, task: str) -> list[int] | None:
    m = run.get("final_test", {}).get(task, {})
    if "wins_vs_majority" not in m or "losses_vs_majority" not in m:
        return None
    return [int(m["wins_vs_majority"]), int(m["losses_vs_majority"])]


def _versus_majority(rows: dict[str, dict], refs: dict[str, dict[str, dict]], metrics: dict[str, str]) -> dict:
    """Per method and profile task (accuracy), per seed: a one-sided test that the method beats always
    answering the training majority class on the same test users. The exact McNemar test on the
    discordant pairs where the run recorded them (lifelongrec.significance.mcnemar_greater); otherwise
    an exact binomial test of the accuracy against the majority class's test share (scipy binomtest),
    which ignores the pairing and has less power."""
    from scipy.stats import binomtest

    out: dict[str, dict[str, dict]] = {}
    for m, row in rows.items():
        for t, st in row["final"].items():
            ref = refs.get("majority", {}).get(t)
            if metrics.get(t) != "accuracy" or not ref or not ref.get("examples"):
                continue
            n, share = int(ref["examples"]), float(ref["accuracy"])
            counts = row.get("vs_majority_counts", {}).get(t) or []
            if counts and all(c is not None for c in counts):
                test, ps = "mcnemar", [mcnemar_greater(w, lo) for w, lo in counts]
            else:
                test = "binomial"
                ps = [
                    float(binomtest(round(v * n), n, share, alternative="greater").pvalue)
                    for v in st["values"]
                    if v is not None and not math.isnan(v)
                ]
            out.setdefault(m, {})[t] = {
                "p": ps,
                "test": test,
                "n": n,
                "majority": share,
                "all_below_0.05": bool(ps) and max(ps) < 0.05,
            }
    return out


def _cell(st: dict | None) -> str:
    if not st or st.get("mean") is None:
        return "-"
    return f"{st['mean']:.4f}" + (f" ± {st['std']:.4f}" if st.get("std") is not None else "")


def render(result: dict) -> str:
    tasks, metrics = result["tasks"], result["metrics"]
    head = [
        "method",
        *[f"{t} ({metrics.get(t, '?')})" for t in tasks],
        "mean forgetting per metric",
        "#Bb",
        "bytes added T2+",
        "s/task",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tests = result.get("vs_" + REFERENCE_METHOD, {})
    for m, row in result["methods"].items():
        cells = []
        for t in tasks:
            c = _cell(row["final"].get(t))
            p = tests.get(m, {}).get(t, {}).get("p")
            cells.append(c + (f" (p={p:.2g})" if p is not None else ""))
        added = sum(row["added_bytes"][1:]) if len(row["added_bytes"]) > 1 else 0
        lines.append(
            "| "
            + " | ".join(
                [
                    m + ("" if row["complete"] else " (partial)"),
                    *cells,
                    "; ".join(f"{k} {_cell(st)}" for k, st in row["forgetting_mean"].items()),
                    str(row["backbones_stored"]),
                    fmt_bytes(added),
                    _cell(row["train_seconds"]),
                ]
            )
            + " |"
        )
        for label, per_task in row.get("phases", {}).items():
            cells = [_cell(per_task.get(t)) for t in tasks]
            lines.append("| " + " | ".join([label, *cells, "-", "-", "-", "-"]) + " |")
    for name, per_task in result["references"].items():
        cells = []
        for t in tasks:
            v = per_task.get(t, {}).get(metrics.get(t, ""))
            cells.append("-" if v is None else f"{v:.4f}")
        lines.append("| " + " | ".join([f"*{name}* (reference)", *cells, "-", "-", "-", "-"]) + " |")
    versus = result.get("vs_majority", {})
    if versus:
        lines += [
            "",
            "Profile tasks against always answering the majority class, on the same test users (one-sided "
            "exact McNemar test on the discordant users; a binomial test of the accuracy where a run did not "
            "record them, marked (b)), p per seed, ✓ where every seed is below 0.05:",
            "",
        ]
        for m, per_task in versus.items():
            cells = [
                f"{t}: "
                + ", ".join(f"{p:.2g}" for p in v["p"])
                + (" (b)" if v.get("test") == "binomial" else "")
                + (" ✓" if v["all_below_0.05"] else "")
                for t, v in per_task.items()
            ]
            lines.append(f"- {m}: " + "; ".join(cells))
    lines += [
        "",
        "Each cell: the task's final test metric after the whole stream, mean ± standard deviation over seeds; "
        f"(p=...) is a two-sided paired t-test against {REFERENCE_METHOD} over the same seeds (no correction for "
        "multiple comparisons). Reference rows are computed on the same test splits without training a model.",
    ]
    return "\n".join(lines)
