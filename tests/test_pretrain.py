"""T1 pretraining end to end on the synthetic ring: learning, pinned metrics, resume, artifacts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from synthetic import synthetic_config

from lifelongrec.artifacts import load_backbone
from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.errors import ConfigError, LifelongrecError
from lifelongrec.pretrain import pretrain

# Pinned test metrics for the synthetic ring with seed 0 (torch 2.13 CPU, 1 thread). A change that
# silently shifts accuracy fails here; update only with a reason in the commit message.
PINNED = {
    "nextitnet": {"MRR@5": 0.5713, "HR@5": 0.7222},
    "sasrec": {"MRR@5": 0.5741, "HR@5": 0.6667},
    # Kang and McAuley's block layout with the N(0, 0.02^2) init and plain random batches (configs/ml1m_loo.yaml)
    "sasrec-original": {"MRR@5": 0.5833, "HR@5": 0.6667},
}
VARIANTS = {"sasrec-original": ["model.block=original", "model.init_std=0.02", "train.length_buckets=1"]}


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec", "sasrec-original"])
def test_pretrain_learns_the_ring_and_writes_artifact(tmp_path, backbone):
    name = backbone.split("-")[0]
    cfg = load_config(synthetic_config(tmp_path, name, epochs=6), VARIANTS.get(backbone))
    stream, _ = open_stream(cfg)
    meta = pretrain(cfg, stream, tmp_path / "run", log=lambda *_: None)
    test = meta["test"]
    print(backbone, json.dumps(test))
    assert test["protocol"] == "full" and test["examples"] == 18
    assert test["HR@5"] > 0.5  # chance is 5/20
    pinned = PINNED[backbone]
    for k, v in pinned.items():
        assert test[k] == pytest.approx(v, abs=0.03)
    lines = (tmp_path / "run" / "train" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == meta["epochs_run"]
    b, h, m = load_backbone(tmp_path / "run")
    assert m["vocab_hash"] == stream.manifest["vocab_hash"]
    x = torch.tensor([[1, 2, 3]])
    assert b.user_vector(x).shape == (1, 16)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg_path = synthetic_config(tmp_path, epochs=4)
    stream, _ = open_stream(load_config(cfg_path))
    pretrain(load_config(cfg_path), stream, tmp_path / "whole", log=lambda *_: None)
    # "Killed" after epoch 2: a run limited to 2 epochs, then the same folder continued to 4.
    pretrain(load_config(cfg_path, ["train.epochs=2"]), stream, tmp_path / "split", log=lambda *_: None)
    pretrain(load_config(cfg_path), stream, tmp_path / "split", log=lambda *_: None)
    a = load_file(tmp_path / "whole" / "backbone.safetensors")
    b = load_file(tmp_path / "split" / "backbone.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = (tmp_path / "whole" / "train" / "metrics.jsonl").read_text().splitlines()
    hb = (tmp_path / "split" / "train" / "metrics.jsonl").read_text().splitlines()
    timing = ("tokens_per_s", "peak_rss_mib")

    def strip(line: str) -> dict:
        return {k: v for k, v in json.loads(line).items() if "seconds" not in k and k not in timing}

    assert [strip(x) for x in ha] == [strip(x) for x in hb]


def test_resume_with_other_settings_is_refused(tmp_path):
    """A checkpoint continues only the run it belongs to: another lr or model is an error, more epochs
    or another thread count is fine."""
    cfg_path = synthetic_config(tmp_path, epochs=2)
    stream, _ = open_stream(load_config(cfg_path))
    pretrain(load_config(cfg_path, ["train.epochs=1"]), stream, tmp_path / "run", log=lambda *_: None)
    for change, named in [("train.lr=0.02", "train.lr: 0.01 -> 0.02"), ("model.dropout=0.3", "model.dropout")]:
        cfg = load_config(cfg_path, [change])
        with pytest.raises(ConfigError, match="other settings") as err:
            pretrain(cfg, stream, tmp_path / "run", log=lambda *_: None)
        assert named in str(err.value)
    meta = pretrain(load_config(cfg_path, ["train.threads=1"]), stream, tmp_path / "run", log=lambda *_: None)
    assert meta["epochs_run"] == 2


def test_corrupt_artifact_is_refused(tmp_path):
    cfg = load_config(synthetic_config(tmp_path, epochs=1))
    stream, _ = open_stream(cfg)
    pretrain(cfg, stream, tmp_path / "run", log=lambda *_: None)
    p = tmp_path / "run" / "backbone.safetensors"
    blob = bytearray(p.read_bytes())
    blob[-1] ^= 1
    p.write_bytes(bytes(blob))
    with pytest.raises(LifelongrecError, match="sha256 differs"):
        load_backbone(tmp_path / "run")


def test_sampled_softmax_and_sampled_eval_are_labelled(tmp_path):
    cfg = load_config(
        synthetic_config(tmp_path, epochs=2),
        ["train.loss=sampled", "train.sampled_fraction=0.3", "train.sampled_eval_negatives=5"],
    )
    stream, _ = open_stream(cfg)
    meta = pretrain(cfg, stream, tmp_path / "run", log=lambda *_: None)
    assert meta["test"]["protocol"] == "sampled-5"


def test_exclude_seen_is_labelled_and_never_hurts_on_the_ring(tmp_path):
    base = load_config(synthetic_config(tmp_path, epochs=2))
    stream, _ = open_stream(base)
    a = pretrain(base, stream, tmp_path / "a", log=lambda *_: None)["test"]
    cfg = load_config(synthetic_config(tmp_path, epochs=2), ["train.exclude_seen=true"])
    b = pretrain(cfg, stream, tmp_path / "b", log=lambda *_: None)["test"]
    assert b["protocol"] == "full-exclude-seen"
    assert b["HR@5"] >= a["HR@5"]  # same weights (same seed), fewer competitors


def test_history_all_trains_on_every_item_of_long_histories(tmp_path):
    """train.history=all: the objective's windows cover every training target once; "last" keeps only
    the newest max_length + 1 items of each user."""
    import numpy as np

    from lifelongrec.data.stream import TRAIN
    from lifelongrec.objectives import NextItemObjective
    from lifelongrec.pretrain import build_t1, t1_net

    counts = {}
    for history in ("last", "all"):
        cfg = load_config(synthetic_config(tmp_path, "nextitnet"), [f"train.history={history}"])
        stream, _ = open_stream(cfg)
        obj = NextItemObjective(stream, "T1", t1_net(*build_t1(cfg, stream)), cfg)
        w = obj.train_w[:]  # built
        counts[history] = int(((w[:, :-1] > 0) & (w[:, 1:] > 0)).sum())
    td = stream.task("T1")
    expected = int((td.end[td.split == TRAIN].astype(np.int64) - 1).sum())  # every item after the first
    assert counts["all"] == expected
    assert counts["last"] < expected  # the synthetic histories are longer than max_length = 12


def test_fit_reports_the_seconds_spent_before_a_resume(tmp_path):
    """The stream runner times a task by wall clock; a resumed fit() says what the killed process spent."""
    from lifelongrec.engine import fit
    from lifelongrec.objectives import NextItemObjective
    from lifelongrec.pretrain import build_t1, t1_net

    cfg = load_config(synthetic_config(tmp_path, epochs=3))
    stream, _ = open_stream(cfg)
    obj = NextItemObjective(stream, "T1", t1_net(*build_t1(cfg, stream)), cfg)
    quiet = {"log": lambda *_: None}
    first = fit(obj, cfg.train.model_copy(update={"epochs": 2}), tmp_path / "fit", **quiet)
    assert first.resumed_seconds == 0.0
    again = fit(obj, cfg.train, tmp_path / "fit", **quiet)
    done = [json.loads(x) for x in (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines()[:2]]
    assert again.epochs_run == 3
    assert again.resumed_seconds == pytest.approx(sum(e["train_seconds"] + e["eval_seconds"] for e in done))


def test_length_buckets_cover_every_example_once():
    import numpy as np

    from lifelongrec.data.batches import bucketed_batches

    lengths = np.random.default_rng(1).integers(1, 200, size=1000)
    for bucket in (1, 4, 64):
        batches = bucketed_batches(lengths, 32, np.random.default_rng(0), bucket)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        spread = np.mean([np.ptp(lengths[b]) for b in batches])
        if bucket == 64:  # one sorted group: each batch spans a narrow band of lengths
            assert spread < 20
        if bucket == 1:  # plain random batches span most of the range
            assert spread > 150


@pytest.mark.parametrize(
    ("sets", "pinned"),
    [(["train.precision=bf16"], "nextitnet"), (["train.compile=true"], "nextitnet")],
    ids=["bf16", "compile"],
)
def test_bf16_and_compiled_training_learn_the_ring_and_keep_float32_weights(tmp_path, sets, pinned):
    """train.precision=bf16 (autocast) and train.compile=true train to the float32 run's metrics within
    the pin's tolerance; the saved weights stay float32, and evaluation runs in float32."""
    cfg = load_config(synthetic_config(tmp_path, "nextitnet", epochs=6), sets)
    stream, _ = open_stream(cfg)
    meta = pretrain(cfg, stream, tmp_path / "run", log=lambda *_: None)
    for k, v in PINNED[pinned].items():
        assert meta["test"][k] == pytest.approx(v, abs=0.05), k
    weights = load_file(tmp_path / "run" / "backbone.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}


@pytest.mark.parametrize(("omp", "want"), [("1", 1), ("", None), ("zero", None), ("0", None)])
def test_threads_default_to_omp_num_threads_else_every_core(monkeypatch, omp, want):
    """train.threads unset: OMP_NUM_THREADS when it names a positive count (how test workers and
    schedulers share a machine), else every core; an explicit count always wins."""
    import os

    from lifelongrec.engine import set_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    try:
        assert set_threads(None) == (want or os.cpu_count())
        assert torch.get_num_threads() == set_threads(None)
        assert set_threads(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
