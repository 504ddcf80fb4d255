"""Reports from finished (or partial) stream runs. Reads only the files a run wrote.

`report(runs, out)` writes `report.md`, a table in the layout of Conure's Table 2 (rows = methods,
columns = tasks, the final metric of each task after the whole stream, plus backbones stored, bytes
added and training seconds per task), and per run two heatmaps: the accuracy matrix R (coloured by
retention R[i][j] / R[j][j], values written in the cells) and the forgetting matrix R[j][j] - R[i][j].
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .continual import by_metric_line
from .errors import LifelongrecError
from .fsutil import read_json, write_text_atomic


class RunSummary(BaseModel):
    """The part of summary.json a report reads (extra keys are kept, missing or mistyped ones refused)."""

    model_config = ConfigDict(extra="allow")

    method: str
    tasks: list[str]
    metrics: list[str]
    forgetting: list[float | None]
    bwt: float | None
    complete: bool
    backbones_stored: int
    trainable_parameters: list[int]
    added_bytes: list[int]
    train_seconds: list[float]


def _matrix(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError:
        raise LifelongrecError(f"{path}: not UTF-8 text (expected the accuracy matrix CSV)") from None
    if not rows or rows[0][:1] != ["after"]:
        raise LifelongrecError(f"{path}: expected a header row 'after,<task>,...' (the accuracy matrix)")
    order = rows[0][1:]
    R = np.full((len(rows) - 1, len(order)), math.nan)
    for i, r in enumerate(rows[1:]):
        if len(r) != len(order) + 1:
            raise LifelongrecError(f"{path}: line {i + 2}: {len(r)} cells, expected {len(order) + 1}")
        for j, v in enumerate(r[1:]):
            if v != "":
                try:
                    R[i, j] = float(v)
                except ValueError:
                    raise LifelongrecError(f"{path}: line {i + 2}: cell {v[:40]!r} is not a number") from None
    return order, R


def read_run(path: Path) -> dict:
    if not path.is_dir():
        raise LifelongrecError(f"{path}: not a folder (expected a stream run folder)")
    for name in ("summary.json", "run.json", "matrix.csv"):
        if not (path / name).is_file():
            raise LifelongrecError(f"{path}: not a stream run folder ({name} is missing)")
    raw = read_json(path / "summary.json", "a stream run's summary.json")
    try:
        RunSummary.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise LifelongrecError(f"{path / 'summary.json'}: {where}: {err['msg']}") from None
    summary = raw
    run = read_json(path / "run.json", "a stream run's run.json")
    order, R = _matrix(path / "matrix.csv")
    n = len(summary["tasks"])
    if R.shape[0] != n or order[:n] != summary["tasks"]:
        raise LifelongrecError(
            f"{path}: matrix.csv ({R.shape[0]} rows, tasks {order}) and summary.json (tasks {summary['tasks']}) "
            "disagree; the run folder is damaged"
        )
    # Phase metrics the method asked the report to show (e.g. Conure-: before pruning), per task.
    phases: dict[str, dict[str, float | None]] = {key: {} for key in summary.get("report_phases", {})}
    mfile = path / "metrics.jsonl"
    if mfile.is_file() and phases:
        for i, line in enumerate(mfile.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            try:
                row = json.loads(line)
                for key, metrics in row.get("phase_metrics", {}).items():
                    if key in phases:
                        phases[key][row["task"]] = metrics.get(row["metric"])
            except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
                raise LifelongrecError(f"{mfile}: line {i}: not a metrics row of a stream run (damaged)") from None
    return {
        "path": path,
        "summary": summary,
        "run": run,
        "order": order,
        "R": R,
        "phases": phases,
        "final_test": _final_test(mfile, n),
    }


def _final_test(mfile: Path, n: int) -> dict[str, dict]:
    """Every task's full test metrics after the last learned task (row n of metrics.jsonl), or {} for a
    run without them. The bench reads the McNemar counts of profile tasks here."""
    if n == 0 or not mfile.is_file():
        return {}
    lines = mfile.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        held = json.loads(lines[n - 1]).get("test_after", {}) if len(lines) >= n else {}
    except json.JSONDecodeError:
        raise LifelongrecError(f"{mfile}: line {n}: not a metrics row of a stream run (damaged)") from None
    return held if isinstance(held, dict) else {}


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _split_by_family(summary: dict, values: list) -> tuple[str, str]:
    """Means of the tasks after the first with a ranking metric (item tasks), and of every task with a
    classification metric (profile tasks), formatted; '-' where there is none."""
    item, profile = [], []
    for j, (metric, v) in enumerate(zip(summary["metrics"], values)):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if "@" in metric:
            if j > 0:
                item.append(v)
        else:
            profile.append(v)
    return (f"{np.mean(item):.4f}" if item else "-", f"{np.mean(profile):.4f}" if profile else "-")


def table(runs: list[dict]) -> str:
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in r["order"] if t not in tasks]
    head = [
        "method",
        *tasks,
        "avg item T2+",
        "avg profile",
        "forgetting (mean)",
        "gain over reference",
        "#Bb",
        "trainable params per task (T2+ mean)",
        "bytes added (T2+ total)",
        "train s per task (mean)",
    ]
    # The reference of forward transfer: a complete run of a method that learns every task from scratch.
    ref = next((r for r in runs if r["summary"].get("reference_for_fwt") and r["summary"]["complete"]), None)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        s, order, R = r["summary"], r["order"], r["R"]
        last = R[len(s["tasks"]) - 1] if len(s["tasks"]) else []
        cells = []
        for t in tasks:
            j = order.index(t) if t in order else None
            cells.append("-" if j is None or j >= len(last) or math.isnan(last[j]) else f"{last[j]:.4f}")
        item, profile = _split_by_family(s, list(last))
        forget = [f for f in s["forgetting"] if f is not None]
        fwt = "-"
        if ref is not None and ref is not r:  # FWT_j = R[j][j] - reference R[j][j] (continual.py), mean over T2+
            ref_diag = {t: ref["R"][j, j] for j, t in enumerate(ref["order"]) if j < len(ref["R"])}
            gains = [R[j, j] - ref_diag[t] for j, t in enumerate(order[: len(s["tasks"])]) if j > 0 and t in ref_diag]
            fwt = f"{np.mean(gains):+.4f}" if gains else "-"
        params = s["trainable_parameters"][1:]
        lines.append(
            "| "
            + " | ".join(
                [
                    s["method"] + ("" if s["complete"] else " (partial)"),
                    *cells,
                    item,
                    profile,
                    f"{np.mean(forget):.4f}" if forget else "-",
                    fwt,
                    str(s["backbones_stored"]),
                    f"{np.mean(params):,.0f}" if params else "-",
                    fmt_bytes(sum(s["added_bytes"][1:])) if len(s["added_bytes"]) > 1 else "-",
                    f"{np.mean(s['train_seconds']):.0f}",
                ]
            )
            + " |"
        )
        for key, label in s.get("report_phases", {}).items():
            values = r["phases"].get(key, {})
            if not values:
                continue
            cells = [f"{values[t]:.4f}" if values.get(t) is not None else "-" for t in tasks]
            item, profile = _split_by_family(s, [values.get(t) for t in order[: len(s["tasks"])]])
            lines.append("| " + " | ".join([f"{s['method']}- ({label})", *cells, item, profile] + ["-"] * 6) + " |")
    metrics = sorted({m for r in runs for m in r["summary"]["metrics"]})
    lines.append("")
    lines.append(
        f"Each task's final metric on its test split after the whole stream ({', '.join(metrics)}; "
        "item tasks by exact full ranking). avg item T2+: mean of the ranking metric over the item tasks after "
        "the first; avg profile: mean of the accuracy/AUC over the profile tasks (kept apart: averaging MRR@5 "
        "with accuracy would let the profile tasks dominate). #Bb: backbones stored. Gain over reference: mean "
        "over T2+ of R[j][j] minus R[j][j] of a run that learns each task from scratch (SinMo), shown when one "
        "is in the report; it is transfer over SinMo, not GEM's forward transfer. Bytes added: the size of the tasks' "
        "adapter tensors on disk (adapters/<task>/adapter.safetensors, its JSON header aside)."
    )
    return "\n".join(lines)


def heatmaps(run: dict, out: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        raise LifelongrecError(
            "report: the heatmaps need matplotlib (pip install matplotlib), or use --no-plots"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R, order = run["R"], run["order"]
    n = R.shape[0]
    names = order[:n]
    diag = np.array([R[j, j] for j in range(n)])
    retention = R[:, :n] / np.where(diag == 0, np.nan, diag)[None, :]
    forgetting = diag[None, :] - R[:, :n]
    paths = []
    for name, values, colour, title in (
        ("accuracy", R[:, :n], retention, "R[i][j] (colour: R[i][j] / R[j][j])"),
        ("forgetting", forgetting, forgetting, "forgetting R[j][j] - R[i][j]"),
    ):
        fig, ax = plt.subplots(figsize=(1.2 * n + 2, 1.0 * n + 1.5))
        im = ax.imshow(np.ma.masked_invalid(colour), cmap="viridis" if name == "accuracy" else "magma_r")
        for i in range(n):
            for j in range(i + 1):
                if not math.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(n), names)
        ax.set_yticks(range(n), [f"after {t}" for t in names])
        ax.set_title(f"{run['summary']['method']}: {title}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        p = out / f"{run['summary']['method']}_{name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _max_forgetting(summary: dict) -> str:
    values = [f for f in summary.get("forgetting") or [] if f is not None]
    return format(max(values), ".4f") if values else "n/a"


def storage_line(summary: dict) -> str:
    """What the run stores: the base once, then each task's adapter (file sizes on disk)."""
    files = summary.get("adapter_file_bytes") or {}
    if "base_file_bytes" not in summary:
        return "storage: not recorded"
    parts = [f"base {fmt_bytes(summary['base_file_bytes'])}"] + [f"{t} {fmt_bytes(b)}" for t, b in files.items()]
    total = summary["base_file_bytes"] + sum(files.values())
    return f"storage: {', '.join(parts)} (adapters/<task>/adapter.safetensors; total {fmt_bytes(total)})"


def report(paths: list[Path], out: Path, plots: bool = True) -> str:
    runs = [read_run(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    text = table(runs)
    body = ["# Stream report", "", text, ""]
    for r in runs:
        body.append(
            f"- {r['summary']['method']}: `{r['path']}`, order {' -> '.join(r['order'])}, "
            f"{by_metric_line(r['summary'])}, "
            f"largest forgetting {_max_forgetting(r['summary'])}"
        )
        body.append("  " + storage_line(r["summary"]))
        if plots:
            for p in heatmaps(r, out):
                body.append(f"  ![{p.stem}]({p.name})")
    write_text_atomic(out / "report.md", "\n".join(body) + "\n")
    return text
