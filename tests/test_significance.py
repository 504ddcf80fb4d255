"""The paired t-test against textbook critical values, closed forms, SciPy and a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lifelongrec.significance import paired_t_test, t_two_sided_p


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(12.7062047, 1, 0.05), (2.7764451, 4, 0.05), (4.6040949, 4, 0.01), (2.2281389, 10, 0.05), (0.0, 7, 1.0)],
)
def test_t_critical_values(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=1e-6)
    assert t_two_sided_p(-t, df) == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 40.0])
def test_t_closed_forms(t):
    # df = 1 is the Cauchy law: P(|T| >= t) = 1 - (2 / pi) atan t; df = 2: 1 - t / sqrt(2 + t^2).
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert t_two_sided_p(math.inf, 3) == 0.0
    with pytest.raises(ValueError, match="degree of freedom"):
        t_two_sided_p(t, 0)


def test_paired_t_test_by_hand():
    a, b = [0.31, 0.29, 0.35, 0.30, 0.33], [0.30, 0.27, 0.32, 0.30, 0.30]
    # differences 0.01 0.02 0.03 0.00 0.03: mean 0.018, sample sd 0.013038, t = 0.018 / (0.013038 / sqrt 5)
    r = paired_t_test(a, b)
    assert set(r) == {"n", "mean_difference", "t", "df", "p"}
    assert r["n"] == 5 and r["df"] == 4 and r["mean_difference"] == pytest.approx(0.018)
    assert r["t"] == pytest.approx(0.018 / (math.sqrt(0.00017) / math.sqrt(5)), rel=1e-9)
    assert 0.01 < r["p"] < 0.05  # t = 3.087 with 4 df lies between the 5% and 1% critical values
    assert r["p"] == pytest.approx(t_two_sided_p(r["t"], 4), rel=1e-12)
    assert all(type(r[k]) is float for k in ("mean_difference", "t", "p"))  # JSON-ready plain numbers


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        a, b = rng.normal(size=n), rng.normal(0.3, size=n)
        r, ref = paired_t_test(a.tolist(), b.tolist()), stats.ttest_rel(a, b)
        assert r["t"] == pytest.approx(ref.statistic, rel=1e-12) and r["p"] == pytest.approx(ref.pvalue, rel=1e-12)
        assert r["df"] == n - 1 and r["mean_difference"] == pytest.approx(float(np.mean(a - b)))


def test_paired_t_test_without_spread():
    r = paired_t_test([1.0, 2.0], [1.0, 2.0])
    assert (r["t"], r["p"], r["mean_difference"]) == (0.0, 1.0, 0.0)
    r = paired_t_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert (r["t"], r["p"], r["mean_difference"]) == (math.inf, 0.0, 1.0)
    assert paired_t_test([1.0, 2.0], [2.0, 3.0])["t"] == -math.inf


def test_paired_t_test_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        paired_t_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least two"):
        paired_t_test([1.0], [1.0])
