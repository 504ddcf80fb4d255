"""Continual metrics against hand-computed matrices (Avalanche's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lifelongrec.continual import average, bwt, forgetting, fwt, summary

nan = math.nan
# Three tasks; task 0 drops from 0.5 to 0.1 after task 1 and recovers to 0.2; task 1 drops 0.4 -> 0.3.
R = np.array([[0.5, nan, nan], [0.1, 0.4, nan], [0.2, 0.3, 0.9]])


def test_forgetting_and_bwt_by_hand():
    f = forgetting(R)
    assert f[0] == pytest.approx(0.3) and f[1] == pytest.approx(0.1) and math.isnan(f[2])
    assert bwt(R) == pytest.approx(-(0.3 + 0.1) / 2)
    assert average(R) == pytest.approx((0.2 + 0.3 + 0.9) / 3)


def test_no_forgetting_gives_zero():
    Z = np.array([[0.5, nan], [0.5, 0.7]])
    assert forgetting(Z)[0] == 0 and bwt(Z) == 0


def test_fwt_against_reference():
    f = fwt(R, [0.5, 0.35, 1.0])
    assert f.tolist() == pytest.approx([0.0, 0.05, -0.1])
    s = summary(R, [0.5, 0.35, 1.0])
    assert s["fwt_mean"] == pytest.approx((0.05 - 0.1) / 2)


def test_single_task_and_bad_shapes():
    assert math.isnan(bwt(np.array([[0.3]])))
    with pytest.raises(ValueError):
        forgetting(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        fwt(R, [0.1])
