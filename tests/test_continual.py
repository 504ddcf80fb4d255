"""Continual metrics against hand-computed matrices (Avalanche's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lifelongrec.continual import average, bwt, by_metric, by_metric_line, forgetting, fwt, summary

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


def test_metrics_of_different_kinds_are_summarised_apart():
    """Issue 16, item 8: MRR@5 and accuracy are never averaged together. Task 0 (MRR@5) forgets 0.3,
    task 1 (accuracy) 0.1; the last task (accuracy) has no later task."""
    s = summary(R, metrics=["MRR@5", "accuracy", "accuracy"])
    assert s["average"] is None and s["bwt"] is None  # no one number over both kinds
    g = s["by_metric"]
    assert g["MRR@5"] == {"tasks": [0], "average": pytest.approx(0.2), "bwt": pytest.approx(-0.3)}
    assert g["accuracy"] == {"tasks": [1, 2], "average": pytest.approx(0.6), "bwt": pytest.approx(-0.1)}
    line = by_metric_line({**s, "tasks": ["T1", "T2", "T3"]})
    assert line == "average MRR@5 0.2000 (T1), accuracy 0.6000 (T2 T3)  BWT MRR@5 -0.3000, accuracy -0.1000"
    # one kind: the overall numbers stay, and agree with the group's
    one = summary(R, metrics=["MRR@5"] * 3)
    assert one["average"] == pytest.approx(one["by_metric"]["MRR@5"]["average"])
    assert one["bwt"] == pytest.approx(one["by_metric"]["MRR@5"]["bwt"])


def test_a_summary_written_before_by_metric_gives_the_same_line():
    s = summary(R, metrics=["MRR@5", "accuracy", "accuracy"])
    old = {
        "tasks": ["T1", "T2", "T3"],
        "metrics": ["MRR@5", "accuracy", "accuracy"],
        "final": s["final"],
        "forgetting": [0.3, 0.1, None],
    }  # as summary.json stores it (JSON has no NaN)
    assert by_metric_line(old) == by_metric_line({**s, "tasks": old["tasks"]})
    only_last = by_metric([0.5, 0.7], [0.0, None], ["MRR@5", "accuracy"])
    assert only_last["accuracy"]["bwt"] is None  # no later task: no BWT, not zero (and JSON-ready)
    assert math.copysign(1, only_last["MRR@5"]["bwt"]) == 1  # nothing forgotten prints +0.0000, not -0.0000
    assert "BWT MRR@5 +0.0000" in by_metric_line(summary(np.array([[0.3, nan], [0.3, 0.5]]), metrics=["MRR@5"] * 2))
    with pytest.raises(ValueError, match="one metric name per task"):
        by_metric([0.5], [None], ["MRR@5", "accuracy"])
