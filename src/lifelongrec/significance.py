"""Paired t-test for comparing two methods over seeds (Conure's Table 3 reports such p-values).

A thin layer over `scipy.stats.ttest_rel` that returns plain numbers (JSON-ready) and gives a defined
answer when every paired difference is the same, where SciPy returns nan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if df < 1:
        raise ValueError("a t-test needs at least one degree of freedom")
    return float(2.0 * stats.t.sf(abs(t), df))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired t-test of mean(a - b) = 0. Returns n, mean difference, t, df and p."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n < 2:
        raise ValueError("a paired t-test needs at least two pairs")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = x - y
    mean = float(diff.mean())
    if np.all(diff == diff[0]):  # no spread: SciPy gives nan; the answer is certain either way
        t = math.copysign(math.inf, mean) if mean else 0.0
        return {"n": n, "mean_difference": mean, "t": t, "df": n - 1, "p": 0.0 if mean else 1.0}
    res = stats.ttest_rel(x, y)
    return {"n": n, "mean_difference": mean, "t": float(res.statistic), "df": n - 1, "p": float(res.pvalue)}


def mcnemar_greater(wins: int, losses: int) -> float:
    """One-sided exact McNemar test that a classifier beats another on the same examples: the p-value of
    at least `wins` successes in wins + losses fair coin flips (the discordant pairs; concordant pairs
    carry no information). 1.0 when there is no discordant pair."""
    if wins < 0 or losses < 0:
        raise ValueError(f"discordant counts must be >= 0, got wins={wins}, losses={losses}")
    if wins + losses == 0:
        return 1.0
    return float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)
