"""`lifelongrec bench`: every method on one stream, shared T1 per seed, mean ± std, reference rows,
paired tests against STL, resumable."""

from __future__ import annotations

import json

from synthetic import synthetic_config
from typer.testing import CliRunner

from lifelongrec.bench import run_bench
from lifelongrec.cli import app

SETS = ["train.epochs=2", "train.patience=5"]


def test_bench_aggregates_seeds_and_references(tmp_path):
    cfg = synthetic_config(tmp_path)
    out = tmp_path / "bench"
    res = run_bench(cfg, out, ["finesmax", "stl", "conure"], seeds=2, overrides=SETS)
    assert set(res["methods"]) == {"finesmax", "stl", "conure"} and res["tasks"] == ["T1", "T2", "T3"]
    for m, row in res["methods"].items():
        for t in res["tasks"]:
            st = row["final"][t]
            assert st["n"] == 2 and st["std"] is not None and len(st["values"]) == 2, (m, t)
    # one T1 per seed shared by every method: FineSmax and STL serve exactly the pretrained T1
    for seed in (0, 1):
        pre = json.loads((out / f"seed-{seed}" / "T1" / "backbone.json").read_text())["test"]["MRR@5"]
        assert abs(res["methods"]["finesmax"]["final"]["T1"]["values"][seed] - pre) < 1e-6
    # the seeds differ (otherwise the std would be meaningless)
    assert res["methods"]["stl"]["final"]["T2"]["values"][0] != res["methods"]["stl"]["final"]["T2"]["values"][1]
    assert set(res["vs_stl"]) == {"finesmax", "conure"} and "p" in res["vs_stl"]["conure"]["T2"]
    assert {"most_popular", "majority"} <= set(res["references"])
    for m in ("finesmax", "stl", "conure"):  # the profile task is tested against the majority class per seed
        assert len(res["vs_majority"][m]["T3"]["p"]) == 2
        assert res["vs_majority"][m]["T3"]["test"] == "mcnemar"  # the runs recorded the discordant users
    text = (out / "report.md").read_text()
    assert "± " in text and "(reference)" in text and "p=" in text and text.count("![") == 6
    # forgetting per metric (issue 16, item 8): T1-T2 are MRR@5; T3, the last task, has no later task
    for m, row in res["methods"].items():
        assert set(row["forgetting_mean"]) == {"MRR@5", "accuracy"}, m
        assert row["forgetting_mean"]["accuracy"]["n"] == 0 and row["forgetting_mean"]["MRR@5"]["n"] == 2
    assert "| mean forgetting per metric |" in text and "MRR@5 0.0000 ± 0.0000; accuracy -" in text
    # rerunning reads the finished runs instead of training again
    again = run_bench(cfg, out, ["finesmax", "stl", "conure"], seeds=2, overrides=SETS)
    assert again["methods"] == res["methods"] and again["wall_seconds"] < res["wall_seconds"]


def test_seeds_learned_apart_report_like_one_call(tmp_path):
    """--only-seed learns one seed and writes no report; a later call reads those runs and trains
    nothing (the same values as learning every seed in one call)."""
    import pytest

    from lifelongrec.errors import LifelongrecError

    cfg = synthetic_config(tmp_path)
    apart, together = tmp_path / "apart", tmp_path / "together"
    for seed in (1, 0):
        assert run_bench(cfg, apart, ["finesmax"], seeds=2, overrides=SETS, only_seed=seed) is None
    assert (apart / "seed-1" / "finesmax" / "run.json").is_file() and not (apart / "report.md").exists()
    with pytest.raises(LifelongrecError, match="from 0 to 1"):
        run_bench(cfg, apart, ["finesmax"], seeds=2, overrides=SETS, only_seed=2)
    mtimes = {p: p.stat().st_mtime_ns for p in apart.rglob("*.safetensors")}
    assert mtimes
    res = run_bench(cfg, apart, ["finesmax"], seeds=2, overrides=SETS)
    assert {p: p.stat().st_mtime_ns for p in apart.rglob("*.safetensors")} == mtimes  # nothing trained again
    ref = run_bench(cfg, together, ["finesmax"], seeds=2, overrides=SETS)
    assert res["methods"]["finesmax"]["final"] == ref["methods"]["finesmax"]["final"]
    # the training time of the whole bench: each T1 once, the later tasks of every run
    want = 0.0
    for seed in (0, 1):
        want += json.loads((apart / f"seed-{seed}" / "T1" / "backbone.json").read_text())["train_seconds"]
        want += sum(json.loads((apart / f"seed-{seed}" / "finesmax" / "summary.json").read_text())["train_seconds"][1:])
    assert (
        res["compute_seconds"] == pytest.approx(want, abs=0.2)
        and "h of training loops" in (apart / "report.md").read_text()
    )


def test_bench_refuses_an_unknown_method_before_training(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--config", str(synthetic_config(tmp_path)), "--methods", "stl,nope"])
    assert "unknown method 'nope'" in str(r.exception)
    assert not (tmp_path / "runs").exists()


def test_the_paper_recipe_config():
    """configs/ml1m_paper.yaml carries Conure's training recipe (section 6.1) at d = 64, with the two
    documented departures (no L2, lr 1e-3 after T1) and the profile tasks' own settings."""
    from lifelongrec.config import load_config

    cfg = load_config("ml1m_paper")
    t1, t2 = cfg.train_for(0, "T1"), cfg.train_for(1, "T2")
    assert cfg.sequence.max_length == 30 and cfg.model.d == 64
    assert (t1.loss, t1.sampled_fraction, t1.lr, t1.batch_size, t1.weight_decay) == ("sampled", 0.2, 1e-3, 32, 0.0)
    assert (t2.lr, t2.batch_size, t2.weight_decay) == (1e-3, 512, 0.0)
    assert (t2.item_loss, t2.negatives, t2.popularity_rho, t2.item_batch) == ("bpr", "popularity", 0.3, "targets")
    assert cfg.input_length(t2) == 30
    for i, name in ((3, "T4"), (4, "T5"), (5, "T6")):
        p = cfg.train_for(i, name)
        assert (cfg.input_length(p), p.pooling, p.monitor, p.batch_size, p.lr) == (200, "mean", "log_loss", 64, 1e-3)


def test_method_variants_have_their_own_settings_and_folder():
    import pytest

    from lifelongrec.bench import parse_variant
    from lifelongrec.errors import LifelongrecError

    assert parse_variant("conure") == ("conure", "conure", [])
    label, name, sets = parse_variant("conure:budget=per_phase,retrain_share=0.3")
    assert (label, name) == ("conure_budget-per_phase_retrain_share-0.3", "conure")
    assert sets == ["method.budget=per_phase", "method.retrain_share=0.3"]
    with pytest.raises(LifelongrecError, match="METHOD:key=value"):
        parse_variant("conure:budget")


def test_binomial_test_against_the_majority_class():
    from lifelongrec.bench import _versus_majority

    rows = {"good": {"final": {"T4": {"values": [0.80, 0.79]}}}, "same": {"final": {"T4": {"values": [0.70, 0.70]}}}}
    refs = {"majority": {"T4": {"accuracy": 0.70, "examples": 873}}}
    v = _versus_majority(rows, refs, {"T4": "accuracy"})
    assert v["good"]["T4"]["all_below_0.05"] and max(v["good"]["T4"]["p"]) < 1e-6
    assert not v["same"]["T4"]["all_below_0.05"] and min(v["same"]["T4"]["p"]) > 0.4


def test_methods_split_keeps_a_variants_several_settings_together():
    from lifelongrec.cli import split_methods

    got = split_methods("seqft, conure:budget=per_phase,retrain_share=0.3,pcl:contextual=false,stl")
    assert got == ["seqft", "conure:budget=per_phase,retrain_share=0.3", "pcl:contextual=false", "stl"]


def test_mcnemar_against_the_majority_class_uses_the_recorded_discordant_users():
    """Where runs recorded wins and losses against the majority class, the test is McNemar's on them:
    60 users answered differently from the majority class, 45 of them rightly, is significant even though
    the accuracy gain (30 of 873) alone, tested as a binomial against the majority share, is weaker."""
    from scipy.stats import binomtest

    from lifelongrec.bench import _versus_majority
    from lifelongrec.significance import mcnemar_greater

    refs = {"majority": {"T4": {"accuracy": 0.70, "examples": 873}}}
    acc = 0.70 + 30 / 873
    rows = {"m": {"final": {"T4": {"values": [acc]}}, "vs_majority_counts": {"T4": [[45, 15]]}}}
    v = _versus_majority(rows, refs, {"T4": "accuracy"})["m"]["T4"]
    assert v["test"] == "mcnemar" and v["p"] == [mcnemar_greater(45, 15)]
    assert v["p"][0] == binomtest(45, 60, 0.5, alternative="greater").pvalue < 1e-4
    assert binomtest(round(acc * 873), 873, 0.70, alternative="greater").pvalue > 10 * v["p"][0]
    # one seed without counts (an older run): every seed falls back to the binomial test
    rows["m"]["vs_majority_counts"]["T4"].append(None)
    rows["m"]["final"]["T4"]["values"].append(acc)
    assert _versus_majority(rows, refs, {"T4": "accuracy"})["m"]["T4"]["test"] == "binomial"
    assert mcnemar_greater(0, 0) == 1.0 and mcnemar_greater(3, 30) > 0.99
