"""The paired t-test against textbook critical values and a hand-computed example."""

from __future__ import annotations

import math

import pytest

from lifelongrec.significance import incomplete_beta, paired_t_test, t_two_sided_p


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(12.7062047, 1, 0.05), (2.7764451, 4, 0.05), (4.6040949, 4, 0.01), (2.2281389, 10, 0.05), (0.0, 7, 1.0)],
)
def test_t_critical_values(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=1e-6)
    assert t_two_sided_p(-t, df) == pytest.approx(p, abs=1e-6)


def test_incomplete_beta_closed_forms():
    assert incomplete_beta(1.0, 1.0, 0.3) == pytest.approx(0.3)  # uniform CDF
    assert incomplete_beta(2.0, 1.0, 0.5) == pytest.approx(0.25)  # x^a when b = 1
    assert incomplete_beta(0.5, 0.5, 0.5) == pytest.approx(0.5)  # arcsine law, symmetric


def test_paired_t_test_by_hand():
    a, b = [0.31, 0.29, 0.35, 0.30, 0.33], [0.30, 0.27, 0.32, 0.30, 0.30]
    # differences 0.01 0.02 0.03 0.00 0.03: mean 0.018, sample sd 0.013038, t = 0.018 / (0.013038 / sqrt 5)
    r = paired_t_test(a, b)
    assert r["df"] == 4 and r["mean_difference"] == pytest.approx(0.018)
    assert r["t"] == pytest.approx(0.018 / (math.sqrt(0.00017) / math.sqrt(5)), rel=1e-9)
    assert 0.01 < r["p"] < 0.05  # t = 3.087 with 4 df lies between the 5% and 1% critical values


def test_paired_t_test_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        paired_t_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least two"):
        paired_t_test([1.0], [1.0])
    assert paired_t_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
