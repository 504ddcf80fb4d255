"""MPT-Rec in the stream (option B of mptrec.md section 7): a frozen backbone, per task an expert, a
prompt and (after the first) attention over the earlier prompts; old tasks bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from synthetic import read_matrix, synthetic_config

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.engine import fit
from lifelongrec.methods import TaskInfo, build_method
from lifelongrec.methods.mptrec import TaskPromptExperts
from lifelongrec.methods.mptrec_faithful import Disentangle
from lifelongrec.objectives import objective_for
from lifelongrec.runner import run_stream

FAST = ["train.epochs=2", "train.patience=5"]


def test_a_later_task_attends_over_the_earlier_prompts_and_trains_only_its_own_parts(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), FAST, method="mptrec")
    stream, _ = open_stream(cfg)
    m = build_method("mptrec", cfg, stream)
    for i, (name, kind) in enumerate([("T1", "next_item"), ("T2", "item_rec")]):
        m.before_task(TaskInfo(name, kind, i))
        m.after_task(TaskInfo(name, kind, i))
    net = m.before_task(TaskInfo("T3", "classify", 2))
    t2, t3 = m.tasks["T2"], m.tasks["T3"]
    assert isinstance(t3, TaskPromptExperts) and len(t3.earlier) == 1 and not hasattr(t2, "project")
    assert torch.equal(t3.earlier_prompts[0], t2.prompt) and all(not p.requires_grad for p in t2.parameters())
    own = {id(p) for p in [*t3.expert.parameters(), t3.prompt, *t3.project.parameters(), *t3.gate.parameters()]}
    head = {id(p) for p in m.heads["T3"].parameters()}
    assert {id(p) for p in net.params} == own | head  # not the backbone, not the copies of T2's expert
    d = m.backbone.d
    assert sum(p.numel() for p in net.params) == 2 * (d * d + d) + d + (d * d // 2 + d * d // 2 + 2 * d) + 2 * d + (
        d * 2 + 2
    )


VARIANTS = [[], ["method.attention=fixed", "method.gate=fixed"], ["method.attention=task_embedding"]]


@pytest.mark.parametrize("sets", VARIANTS)
def test_the_stream_learns_without_forgetting(tmp_path, sets):
    cfg = load_config(synthetic_config(tmp_path), [*FAST, *sets], method="mptrec")
    run = tmp_path / "run"
    s = run_stream(cfg, "mptrec", run, log=lambda *_: None)
    R = read_matrix(run)
    assert R[1][0] == R[0][0] and R[2][0] == R[0][0] and R[2][1] == R[1][1]
    t3 = load_file(run / "adapters" / "T3" / "adapter.safetensors")
    assert "task.earlier_prompts" in t3 and "task.earlier.0.0.weight" in t3  # served alone on the base
    assert not any(k.startswith("backbone.") for k in t3)  # the backbone is the base's, stored once
    assert s["complete"]


def test_faithful_learns_t1_jointly_with_t2_then_prompts_alone(tmp_path):
    """mptrec_faithful: T1 changes once (stage 1, with T2), never after; a later task trains no expert."""
    from lifelongrec.predict import Predictor

    cfg = load_config(synthetic_config(tmp_path), FAST, method="mptrec_faithful")
    run = tmp_path / "run"
    s = run_stream(cfg, "mptrec_faithful", run, log=lambda *_: None)
    R = read_matrix(run)
    assert s["complete"] and R[2][0] == R[1][0] and R[2][1] == R[1][1]
    t3 = load_file(run / "adapters" / "T3" / "adapter.safetensors")
    assert not any(k.startswith("task.expert.") for k in t3) and "task.earlier.1.0.weight" in t3
    t1 = load_file(run / "adapters" / "T1" / "adapter.safetensors")
    assert any(k.startswith("task.expert.") for k in t1)  # T1 is served through its stage-1 expert
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["trainable_parameters"] > rows[2]["trainable_parameters"]  # stage 1 trains the backbone
    p = Predictor(run)
    assert p.recommend("T1", ["i1", "i2", "i3"], k=3)["items"] and p.classify("T3", ["i1", "i2"])["class"]


def test_gradient_reversal_is_the_identity_forward_and_negates_the_gradient():
    from lifelongrec.tabular.mptrec import grl_alpha, reverse_grad

    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_grad(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -0.5))
    assert grl_alpha(0.0) == 0.0 and 0.99 < grl_alpha(1.0) < 1.0


@pytest.mark.parametrize("weights", [("0.9", "0.1"), ("0", "0")])
def test_faithful_stage1_trains_the_environment_classifier_only_when_its_terms_are_on(tmp_path, weights):
    """Stage 1's generic and adversarial terms (mptrec.md eq. 8): with them, the environment classifier
    learns and counts every optimizer step (the reversal schedule); without them, it is never used."""
    g, e = weights
    sets = [*FAST, f"method.generic_weight={g}", f"method.env_weight={e}"]
    cfg = load_config(synthetic_config(tmp_path), sets, method="mptrec_faithful")
    stream, _ = open_stream(cfg)
    m = build_method("mptrec_faithful", cfg, stream)
    m.before_task(TaskInfo("T1", "next_item", 0))
    m.after_task(TaskInfo("T1", "next_item", 0))
    net = m.before_task(TaskInfo("T2", "item_rec", 1))
    assert any(isinstance(cb, Disentangle) for cb in net.callbacks) == (g != "0")
    clf = net.module["env"]
    before = clf.linear.weight.detach().clone()
    obj = objective_for(stream, "T2", net, cfg)
    fit(obj, cfg.train, tmp_path / "fit", log=lambda *_: None)
    moved = not torch.equal(before, clf.linear.weight)
    assert moved == (g != "0")
    assert int(clf.steps) == (obj.n_batches(cfg.train.batch_size) * 2 if g != "0" else 0)
