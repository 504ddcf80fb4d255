"""PCL: frozen backbone and item embeddings, a position-wise prompt and a contextual prompt per task,
old tasks served bit for bit from their cached prompts."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from synthetic import read_matrix, synthetic_config

from lifelongrec.backbones import View, build_backbone
from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.errors import LifelongrecError
from lifelongrec.methods import TaskInfo, build_method
from lifelongrec.methods.pcl import TaskPrompt
from lifelongrec.predict import Predictor
from lifelongrec.runner import run_stream

FAST = ["train.epochs=2", "train.patience=5"]
QUIET = {"log": lambda *_: None}


def _method(tmp_path, *sets: str):
    cfg = load_config(synthetic_config(tmp_path), [*FAST, *sets], method="pcl")
    stream, _ = open_stream(cfg)
    m = build_method("pcl", cfg, stream)
    m.before_task(TaskInfo("T1", "next_item", 0))
    m.after_task(TaskInfo("T1", "next_item", 0))
    return m, cfg


def test_a_task_trains_its_prompt_task_embedding_attention_and_head_only(tmp_path):
    m, cfg = _method(tmp_path)
    net = m.before_task(TaskInfo("T2", "item_rec", 1))
    L, d, k = cfg.input_length(cfg.train_for(1, "T2")), cfg.model.d, m.settings.task_dim
    # P_t [L, d], tau_t [k], W_q and W_k [k, k], and the tied item head's bias (its matrix is the
    # frozen item embedding)
    assert sum(p.numel() for p in net.params) == L * d + k + 2 * k * k + (m.stream.n_items + 1)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    assert net.head.items is m.backbone.item_embedding.weight


def test_the_contextual_prompt_attends_over_earlier_final_prompts(tmp_path):
    m, _ = _method(tmp_path)
    m.before_task(TaskInfo("T2", "item_rec", 1))
    m.after_task(TaskInfo("T2", "item_rec", 1))
    t2 = m.prompts["T2"]
    assert bool(t2.done) and torch.equal(t2.final, t2.prompt.detach())  # the first prompted task: C = 0
    m.before_task(TaskInfo("T3", "classify", 2))
    t3 = m.prompts["T3"]
    got = m._view("T3").prompt
    # one earlier task: its attention weight is 1, so C_3 is T2's cached prompt, right-aligned to T3's length
    L3, L2 = t3.prompt.shape[0], t2.final.shape[0]
    want = t3.prompt.detach().clone()
    n = min(L2, L3)
    want[L3 - n :] += t2.final[L2 - n :]
    torch.testing.assert_close(got.detach(), want)
    got.sum().backward()  # the graph reaches T3's own parameters, never T2's
    assert t3.prompt.grad is not None and t2.prompt.grad is None


def test_without_contextual_prompts_a_task_reads_its_own_prompt(tmp_path):
    m, _ = _method(tmp_path, "method.contextual=false")
    for i, (t, kind) in enumerate([("T2", "item_rec"), ("T3", "classify")], start=1):
        m.before_task(TaskInfo(t, kind, i))
        if i == 2:
            assert torch.equal(m._view(t).prompt, m.prompts[t].prompt)
        m.after_task(TaskInfo(t, kind, i))


def test_a_position_wise_prompt_meets_the_window_from_the_right(tmp_path):
    cfg = load_config(synthetic_config(tmp_path))
    b = build_backbone(cfg.model, 30).eval()
    items = torch.tensor([[0, 0, 3, 4, 5]])
    prompt = torch.zeros(8, cfg.model.d)
    prompt[-1] = torch.randn(cfg.model.d)  # only the most recent position (not constant: LayerNorm removes a shift)
    with torch.no_grad():
        plain, prompted = b.encode(items), b.encode(items, View(prompt=prompt))
        trimmed = b.encode(items[:, 2:], View(prompt=prompt))
    torch.testing.assert_close(prompted[:, :-1], plain[:, :-1])  # causal: earlier positions do not see it
    assert not torch.allclose(prompted[:, -1], plain[:, -1])
    torch.testing.assert_close(trimmed[:, -1], prompted[:, -1])  # padding columns trimmed: the same vector
    assert torch.equal(prompted[0, :2], torch.zeros_like(prompted[0, :2]))  # padding stays zero
    with pytest.raises(ValueError, match="longer than the prompt"):
        b.encode(items, View(prompt=prompt[:3]))


def test_prompt_learning_rate_is_the_methods_own(tmp_path):
    """Prompts train at method.lr (1e-2 by default, the paper's Fig. 3); T1 at its own; null: the task's."""
    m, cfg = _method(tmp_path, "train.lr=0.003")
    train = cfg.train_for(1, "T2")
    assert train.lr == 0.003 and m.phase_train(TaskInfo("T2", "item_rec", 1), 0, train).lr == 0.01
    assert m.phase_train(TaskInfo("T1", "next_item", 0), 0, cfg.train).lr == cfg.train.lr
    m, cfg = _method(tmp_path, "train.lr=0.003", "method.lr=null")
    assert m.phase_train(TaskInfo("T2", "item_rec", 1), 0, train).lr == train.lr


def test_old_tasks_bit_for_bit_and_a_small_adapter(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), FAST)
    run = tmp_path / "run"
    s = run_stream(cfg, "pcl", run, **QUIET)
    t2 = load_file(run / "adapters" / "T2" / "adapter.safetensors")
    assert set(t2) == {"head.bias", "prompt.final", "prompt.task_embedding"}
    assert s["adapter_bytes"]["T2"] < s["base_bytes"] / 10  # prompts and a bias, not a backbone copy
    p = Predictor(run)
    hist = ["i1", "i2", "i3"]
    first = p.recommend("T2", hist, k=5)
    again = Predictor(run).recommend("T2", hist, k=5)
    assert first == again
    # A prompt of the wrong length (another max_length) is refused with a clear message.
    # (The file's hash and size in adapter_config.json are updated, so only the shape can be wrong.)
    f, c = run / "adapters" / "T2" / "adapter.safetensors", run / "adapters" / "T2" / "adapter_config.json"
    t2["prompt.final"] = t2["prompt.final"][1:].contiguous()
    save_file(t2, f)
    meta = json.loads(c.read_text())
    meta["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    c.write_text(json.dumps(meta))
    wrong = r"T2/adapter.safetensors: task T2: its prompt is \[11, 16\], expected \[12, 16\]"
    with pytest.raises(LifelongrecError, match=wrong):
        Predictor(run).recommend("T2", hist, k=5)


def test_task_prompt_effective_is_the_cache_once_done():
    tp = TaskPrompt((4, 3), 2, 0.02, 0, 0)
    with torch.no_grad():
        tp.final.copy_(torch.ones(4, 3))
        tp.done.fill_(True)
    assert torch.equal(tp.effective(True), torch.ones(4, 3))


def test_the_universal_representation_joins_the_prompted_tasks(tmp_path):
    from typer.testing import CliRunner

    from lifelongrec.cli import app

    cfg = load_config(synthetic_config(tmp_path), FAST)
    run_stream(cfg, "pcl", tmp_path / "pcl", **QUIET)
    mean_cfg = load_config(synthetic_config(tmp_path), [*FAST, "method.universal=mean"], method="pcl")
    run_stream(mean_cfg, "pcl", tmp_path / "mean", **QUIET)
    hist = ["i3", "i4", "i5"]
    p = Predictor(tmp_path / "pcl")
    u = p.embed("universal", hist)
    parts = [p.embed(t, hist)["vector"] for t in ("T2", "T3")]
    assert u["tasks"] == ["T2", "T3"] and u["combine"] == "concat"
    assert u["vector"] == pytest.approx(parts[0] + parts[1], abs=1e-6)
    m = Predictor(tmp_path / "mean").embed("universal", hist)
    parts = [Predictor(tmp_path / "mean").embed(t, hist)["vector"] for t in ("T2", "T3")]
    assert m["vector"] == pytest.approx([(a + b) / 2 for a, b in zip(*parts)], abs=1e-6)
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "pcl"), "i3", "i4", "--task", "universal", "--embed"])
    assert r.exit_code == 0 and len(json.loads(r.output)["vector"]) == 2 * cfg.model.d
    # a method without one says so
    run_stream(cfg, "finesmax", tmp_path / "fs", **QUIET)
    with pytest.raises(LifelongrecError, match="no universal user representation"):
        Predictor(tmp_path / "fs").embed("universal", hist)


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_a_prefix_is_a_history_that_starts_earlier(tmp_path, backbone):
    """View.prefix puts its tokens right before each row's first item: with the item embeddings of 7
    and 8 as the prefix, [3, 4, 5] reads exactly as the history [7, 8, 3, 4, 5], whatever the padding."""
    cfg = load_config(synthetic_config(tmp_path, backbone))
    b = build_backbone(cfg.model, 30).eval()
    prefix = b.item_embedding.weight[[7, 8]].detach()
    with torch.no_grad():
        want = b.encode(torch.tensor([[7, 8, 3, 4, 5]]))[:, 2:]
        got = b.encode(torch.tensor([[0, 0, 3, 4, 5]]), View(prefix=prefix))
        padded = b.encode(torch.tensor([[0, 0, 0, 3, 4, 5]]), View(prefix=prefix))
    torch.testing.assert_close(got[:, 2:], want)
    torch.testing.assert_close(padded[:, 3:], want)
    assert torch.equal(padded[:, :3], torch.zeros_like(padded[:, :3]))  # padding stays zero


def test_prefix_prompts_learn_a_stream_without_forgetting(tmp_path):
    sets = [*FAST, "method.prompt=prefix", "method.prefix_length=3"]
    cfg = load_config(synthetic_config(tmp_path), sets, method="pcl")
    s = run_stream(cfg, "pcl", tmp_path / "run", **QUIET)
    R = read_matrix(tmp_path / "run")
    assert all(R[i][j] == R[j][j] for i in range(3) for j in range(i))
    t2 = load_file(tmp_path / "run" / "adapters" / "T2" / "adapter.safetensors")
    assert tuple(t2["prompt.final"].shape) == (3, cfg.model.d) and s["complete"]
    assert len(Predictor(tmp_path / "run").recommend("T2", ["i1", "i2"], k=3)["items"]) == 3


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_deep_prompts_meet_every_block(tmp_path, backbone):
    """depth=deep: row 0 of the prompt meets the input, row i + 1 the stream after block i; with the later
    rows zero it is the input prompt alone, and a later row changes the output."""
    from lifelongrec.methods.pcl import PCLSettings, _prompted

    cfg = load_config(synthetic_config(tmp_path, backbone), ["model.layers=2"])  # two blocks either way
    b = build_backbone(cfg.model, 30).eval()
    assert b.n_blocks == 2
    items = torch.tensor([[0, 3, 4, 5]])
    deep = torch.zeros(b.n_blocks, 6, cfg.model.d)
    deep[0] = torch.randn(6, cfg.model.d)
    s = PCLSettings(name="pcl", depth="deep")
    with torch.no_grad():
        torch.testing.assert_close(b.encode(items, _prompted(s, deep)), b.encode(items, View(prompt=deep[0])))
        deep[-1, -1] = torch.randn(cfg.model.d)
        last = b.encode(items, _prompted(s, deep))[:, -1]
        assert not torch.allclose(last, b.encode(items, View(prompt=deep[0]))[:, -1])


def test_deep_prompts_learn_a_stream_without_forgetting(tmp_path):
    sets = [*FAST, "method.depth=deep"]
    cfg = load_config(synthetic_config(tmp_path), sets, method="pcl")
    m, _ = _method(tmp_path / "m", "method.depth=deep")
    net = m.before_task(TaskInfo("T2", "item_rec", 1))
    L, d, k = cfg.input_length(cfg.train_for(1, "T2")), cfg.model.d, m.settings.task_dim
    assert sum(p.numel() for p in net.params) == m.backbone.n_blocks * L * d + k + 2 * k * k + m.stream.n_items + 1
    run_stream(cfg, "pcl", tmp_path / "run", **QUIET)
    R = read_matrix(tmp_path / "run")
    assert all(R[i][j] == R[j][j] for i in range(3) for j in range(i))
    assert len(Predictor(tmp_path / "run").recommend("T2", ["i1", "i2"], k=3)["items"]) == 3
    with pytest.raises(Exception, match="depth=deep needs method.prompt=added"):
        load_config(synthetic_config(tmp_path), ["method.depth=deep", "method.prompt=prefix"], method="pcl")


def test_a_sequence_query_gives_each_user_a_prompt_and_serves_exactly(tmp_path):
    """query=sequence: the contextual prompt depends on the user's items (per-user attention), old tasks
    stay exact, and the predictor rebuilt from the adapters ranks T2's test targets as the run did."""
    from lifelongrec.data.stream import TEST

    path = synthetic_config(tmp_path)
    path.write_text(
        path.read_text().replace(
            "  - {name: T3, kind: classify, label: gender}",
            "  - {name: T3, kind: classify, label: gender}\n  - {name: T4, kind: binary, label: gender}",
        )
    )  # two tasks before T2, so attention has something to weigh
    cfg = load_config(path, [*FAST, "method.query=sequence"], method="pcl")
    run_stream(cfg, "pcl", tmp_path / "run", order=["T1", "T3", "T4", "T2"], **QUIET)
    R = read_matrix(tmp_path / "run")
    assert all(R[i][j] == R[j][j] for i in range(4) for j in range(i))
    p = Predictor(tmp_path / "run")
    enc = p.model("T2").encoder
    a, b = torch.tensor([[1, 2, 3]]), torch.tensor([[7, 9, 11]])
    ctx = [enc.backbone.item_embedding(x).mean(1) for x in (a, b)]
    assert not torch.equal(enc.tp.context(ctx[0]), enc.tp.context(ctx[1]))  # per-user attention over T3, T4
    stream, _ = open_stream(cfg)
    td = stream.task("T2")
    ranks = []
    for u, end, t in zip(td.user[td.split == TEST], td.end[td.split == TEST], td.target[td.split == TEST]):
        hist = [stream.items[i] for i in stream.seq_items[stream.offsets[u] : stream.offsets[u] + end]]
        scores = {x["item"]: x["score"] for x in p.recommend("T2", hist, k=stream.n_items)["items"]}
        ranks.append(sum(1 for k, v in scores.items() if v >= scores[stream.items[t]] and k != stream.items[t]) + 1)
    mrr5 = sum(1 / r for r in ranks if r <= 5) / len(ranks)
    assert mrr5 == pytest.approx(R[3][3], abs=1e-6)
    with pytest.raises(Exception, match="query=sequence needs"):
        load_config(synthetic_config(tmp_path), ["method.query=sequence", "method.contextual=false"], method="pcl")
