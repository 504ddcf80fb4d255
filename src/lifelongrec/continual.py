"""Continual-learning summaries of an accuracy matrix.

R[i][j] is the metric of task j measured after learning task i (NaN where j > i: not learned yet).
Definitions follow Avalanche (and Lopez-Paz & Ranzato, GEM, 2017):

- final[j]      = R[T-1][j], the metric of task j at the end of the stream;
- average       = mean_j final[j];
- forgetting[j] = R[j][j] - R[T-1][j], the metric when task j was learned minus the metric at the
  end (Avalanche's experience forgetting; positive = forgotten); the last task has none;
- BWT           = mean over j < T-1 of (R[T-1][j] - R[j][j]) = -mean forgetting;
- FWT[j]        = R[j][j] - ref[j] against a reference run that learns each task on its own (for
  example SinMo, a fresh model per task): what learning the earlier tasks first gained on task j.
  Our tasks get new heads, so GEM's R[j-1][j] (before the head exists) is undefined; the reference
  run takes the place of GEM's random-initialisation baseline b_j.

A stream whose tasks report different metrics (MRR@5 for item tasks, accuracy for profile tasks) has
no single average or BWT: a mean of MRR@5 with accuracy is dominated by the accuracies. `summary`
with the tasks' metrics gives both per metric (`by_metric`) and leaves the overall ones None.
"""

from __future__ import annotations

import math

import numpy as np


def _check(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"R must be square, got shape {R.shape}")
    return R


def final(R) -> np.ndarray:
    return _check(R)[-1].copy()


def average(R) -> float:
    return float(np.nanmean(final(R)))


def forgetting(R) -> np.ndarray:
    """Per task j < T-1: R[j][j] - R[T-1][j]; NaN for the last task."""
    R = _check(R)
    T = len(R)
    out = np.full(T, math.nan)
    for j in range(T - 1):
        out[j] = R[j, j] - R[T - 1, j]
    return out


def bwt(R) -> float:
    f = forgetting(R)[:-1]
    return float(-np.mean(f)) + 0.0 if len(f) else math.nan  # + 0.0: no forgetting is BWT 0, not -0


def fwt(R, reference_diag) -> np.ndarray:
    """Per task: R[j][j] - reference[j] (NaN where the reference has no value)."""
    R = _check(R)
    ref = np.asarray(reference_diag, dtype=float)
    if ref.shape != (len(R),):
        raise ValueError(f"reference needs one value per task ({len(R)}), got {ref.shape}")
    return np.diag(R) - ref


def by_metric(final_values, forgetting_values, metrics: list[str]) -> dict[str, dict]:
    """Per metric: its tasks (column indices), their mean final value, and BWT over those of them that
    have a later task (None where none has, so the result goes into JSON as it is). Takes a summary's
    own lists, so an older summary.json without `by_metric` gives the same numbers."""
    last = np.array([math.nan if v is None else v for v in final_values], dtype=float)
    forgot = np.array([math.nan if v is None else v for v in forgetting_values], dtype=float)
    if not len(last) == len(forgot) == len(metrics):
        raise ValueError(f"one metric name per task: {len(last)} tasks, {len(metrics)} names")
    out: dict[str, dict] = {}
    for m in dict.fromkeys(metrics):
        idx = [j for j, name in enumerate(metrics) if name == m]
        earlier = [forgot[j] for j in idx if not math.isnan(forgot[j])]
        out[m] = {
            "tasks": idx,
            "average": float(np.nanmean(last[idx])) if not np.isnan(last[idx]).all() else None,
            "bwt": float(-np.mean(earlier)) + 0.0 if earlier else None,  # + 0.0: never -0.0
        }
    return out


def by_metric_line(summary: dict) -> str:
    """'average MRR@5 0.0177 (T1 T2 T3), accuracy 0.4185 (T4 T5 T6)  BWT MRR@5 +0.0000, accuracy ...'."""
    groups = summary.get("by_metric") or by_metric(summary["final"], summary["forgetting"], summary["metrics"])
    tasks = summary.get("tasks") or []

    def num(v, sign: str = "") -> str:
        return "n/a" if v is None else format(v, sign + ".4f")

    avg = ", ".join(
        f"{m} {num(g['average'])} ({' '.join(tasks[j] for j in g['tasks'] if j < len(tasks))})"
        for m, g in groups.items()
    )
    return f"average {avg}  BWT " + ", ".join(f"{m} {num(g['bwt'], '+')}" for m, g in groups.items())


def summary(R, reference_diag=None, metrics: list[str] | None = None) -> dict:
    R = _check(R)
    out = {
        "final": final(R).tolist(),
        "average": average(R),
        "forgetting": forgetting(R).tolist(),
        "bwt": bwt(R),
    }
    if metrics is not None:
        out["by_metric"] = by_metric(out["final"], out["forgetting"], metrics)
        if len(out["by_metric"]) > 1:  # no one number mixes metrics of different kinds
            out["average"] = out["bwt"] = None
    if reference_diag is not None:
        f = fwt(R, reference_diag)
        out["fwt"] = f.tolist()
        out["fwt_mean"] = float(np.nanmean(f[1:])) if len(f) > 1 else math.nan
    return out
