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
    return float(-np.mean(f)) if len(f) else math.nan


def fwt(R, reference_diag) -> np.ndarray:
    """Per task: R[j][j] - reference[j] (NaN where the reference has no value)."""
    R = _check(R)
    ref = np.asarray(reference_diag, dtype=float)
    if ref.shape != (len(R),):
        raise ValueError(f"reference needs one value per task ({len(R)}), got {ref.shape}")
    return np.diag(R) - ref


def summary(R, reference_diag=None) -> dict:
    R = _check(R)
    out = {
        "final": final(R).tolist(),
        "average": average(R),
        "forgetting": forgetting(R).tolist(),
        "bwt": bwt(R),
    }
    if reference_diag is not None:
        f = fwt(R, reference_diag)
        out["fwt"] = f.tolist()
        out["fwt_mean"] = float(np.nanmean(f[1:])) if len(f) > 1 else math.nan
    return out
