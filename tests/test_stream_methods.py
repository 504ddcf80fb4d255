"""Every method x backbone learns a tiny stream end to end on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import after_t1, synthetic_config

from lifelongrec.config import load_config
from lifelongrec.runner import run_stream

METHODS = ["seqft", "sinmo", "finesmax", "stl", "mtl", "peterrec", "conure", "pcl", "mptrec", "mptrec_faithful"]
FAST = ["train.epochs=2", "train.patience=5"]


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
@pytest.mark.parametrize("method", METHODS)
def test_method_runs_the_stream(tmp_path, method, backbone):
    cfg = load_config(synthetic_config(tmp_path, backbone), FAST)
    s = run_stream(cfg, method, tmp_path / "run", log=lambda *_: None)
    assert s["complete"] and s["tasks"] == ["T1", "T2", "T3"]
    R = [
        [float(x) if x else np.nan for x in line.split(",")[1:]]
        for line in (tmp_path / "run" / "matrix.csv").read_text().splitlines()[1:]
    ]
    assert len(R) == 3 and all(not np.isnan(R[i][i]) for i in range(3))
    if method in ("sinmo", "finesmax", "stl", "peterrec", "mtl", "conure", "pcl", "mptrec"):
        for i in range(3):  # zero forgetting, exactly
            for j in range(i):
                assert R[i][j] == R[j][j], (method, i, j)
    run = tmp_path / "run"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for i, t in enumerate(("T1", "T2", "T3")):
        meta = json.loads((run / "adapters" / t / "adapter_config.json").read_text())
        assert meta["method"] == method and len(meta["base_fingerprint"]) == 64
        # what is stored is what is reported: the adapter file holds the reported tensor bytes plus
        # safetensors' JSON header, nothing else
        size = (run / "adapters" / t / "adapter.safetensors").stat().st_size
        header = int.from_bytes((run / "adapters" / t / "adapter.safetensors").read_bytes()[:8], "little")
        assert size == 8 + header + s["adapter_bytes"][t] == meta["bytes"]
        if method != "mptrec_faithful":  # its stage 1 (T2) adds an expert to T1's adapter too
            assert rows[i]["added_bytes"] == s["adapter_bytes"][t] + (s["base_bytes"] if i == 0 else 0)
    assert sum(r["added_bytes"] for r in rows) == s["base_bytes"] + sum(s["adapter_bytes"].values())
    assert s["added_bytes"][1] > 0 and s["train_seconds"][0] > 0


def test_report_table_and_heatmaps(tmp_path):
    from typer.testing import CliRunner

    from lifelongrec.cli import app

    cfg = load_config(synthetic_config(tmp_path), FAST)
    for m in ("finesmax", "seqft", "sinmo"):
        run_stream(cfg, m, tmp_path / m, log=lambda *_: None)
    r = CliRunner().invoke(
        app, ["report", *(str(tmp_path / m) for m in ("finesmax", "seqft", "sinmo")), "--out", str(tmp_path / "rep")]
    )
    assert r.exit_code == 0, r.output
    rows = [x for x in r.output.splitlines() if x.startswith(("| finesmax", "| seqft", "| sinmo"))]
    lines = {x.split("|")[1].strip(): [c.strip() for c in x.split("|")[1:-1]] for x in rows}
    assert set(lines) == {"finesmax", "seqft", "sinmo"}
    assert lines["finesmax"][8] == "1" and lines["sinmo"][8] == "3"  # backbones stored
    assert lines["finesmax"][7] != "-" and lines["sinmo"][7] == "-"  # gain over the reference (SinMo)
    assert lines["finesmax"][4] != "-" and lines["finesmax"][5] != "-"  # item and profile averages apart
    assert (tmp_path / "rep" / "finesmax_accuracy.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "report.md").read_text().count("![") == 6


def test_report_of_a_non_run_folder(tmp_path):
    from lifelongrec.errors import LifelongrecError
    from lifelongrec.report import read_run

    with pytest.raises(LifelongrecError, match="not a stream run folder"):
        read_run(tmp_path)


def test_stream_starts_from_a_pretrained_backbone(tmp_path):
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.pretrain import pretrain

    cfg = load_config(synthetic_config(tmp_path), FAST)
    stream, _ = open_stream(cfg)
    meta = pretrain(cfg, stream, tmp_path / "pre", log=lambda *_: None)
    s = run_stream(cfg, "finesmax", tmp_path / "run", log=lambda *_: None, init_from=tmp_path / "pre")
    first = float((tmp_path / "run" / "matrix.csv").read_text().splitlines()[1].split(",")[1])
    assert first == pytest.approx(meta["test"]["MRR@5"], abs=1e-6)
    assert s["complete"]
    bad = load_config(synthetic_config(tmp_path), [*FAST, "model.d=8"])
    from lifelongrec.errors import LifelongrecError

    with pytest.raises(LifelongrecError, match="model config"):
        run_stream(bad, "finesmax", tmp_path / "bad", log=lambda *_: None, init_from=tmp_path / "pre")


@pytest.mark.parametrize("task", ["T2", "T3"])
def test_frozen_encoder_cache_gives_the_same_loss(tmp_path, task):
    import torch

    from lifelongrec.data.prepare import open_stream
    from lifelongrec.methods import TaskInfo
    from lifelongrec.objectives import objective_for
    from lifelongrec.tasknet import CachedEncoder, TaskNet

    cfg = load_config(synthetic_config(tmp_path), FAST)
    stream, _ = open_stream(cfg)
    m = after_t1("finesmax", cfg, stream)
    m.backbone.eval()
    net = m.before_task(TaskInfo(task, stream.task(task).kind, 1))
    assert isinstance(net.encoder, CachedEncoder)
    cached = objective_for(stream, task, net, cfg)
    cached.on_fit_start()
    plain_net = TaskNet(net.encoder.inner, net.head, net.module, net.params)
    plain = objective_for(stream, task, plain_net, cfg)
    b1 = next(iter(cached.train_batches(np.random.default_rng(0), 16)))
    b2 = next(iter(plain.train_batches(np.random.default_rng(0), 16)))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.testing.assert_close(cached.loss(b1, g1)[0], plain.loss(b2, g2)[0], rtol=1e-5, atol=1e-6)


def test_item_task_grouped_loss_is_the_mean_over_examples(tmp_path):
    """One batch holding every training user: the loss equals the plain mean CE over all examples."""
    import torch
    import torch.nn.functional as F

    from lifelongrec.data.batches import windows
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TRAIN
    from lifelongrec.methods import TaskInfo
    from lifelongrec.objectives import objective_for

    cfg = load_config(synthetic_config(tmp_path), FAST)
    stream, _ = open_stream(cfg)
    m = after_t1("stl", cfg, stream)
    net = m.before_task(TaskInfo("T2", "item_rec", 1))
    obj = objective_for(stream, "T2", net, cfg)
    batch = next(iter(obj.train_batches(np.random.default_rng(0), 10_000)))
    got = obj.loss(batch, torch.Generator())[0]
    td = stream.task("T2")
    tr = td.split == TRAIN
    w = torch.from_numpy(windows(stream.offsets, stream.seq_items, td.user[tr], td.end[tr], cfg.sequence.max_length))
    with torch.no_grad():
        u = net.encoder.user_vectors({"items": w})
    logits = u @ net.head.weight[1:].T + net.head.bias[1:]
    want = F.cross_entropy(logits, torch.from_numpy(td.target[tr]).long() - 1)
    torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
@pytest.mark.parametrize("placement", ["per_conv", "per_block"])
def test_peterrec_patch_placement(tmp_path, backbone, placement):
    """The reference places a patch after each convolution (SASRec: each sub-layer); both placements
    start exactly as the pretrained network (zero-initialised up-projections) and are stored per task."""
    import torch
    from safetensors.torch import load_file

    from lifelongrec.data.prepare import open_stream
    from lifelongrec.methods import TaskInfo

    cfg = load_config(
        synthetic_config(tmp_path, backbone), [*FAST, "method.name=peterrec", f"method.placement={placement}"]
    )
    stream, _ = open_stream(cfg)
    m = after_t1("peterrec", cfg, stream)
    m.before_task(TaskInfo("T2", "item_rec", 1))
    sites = set(m.patches["T2"].keys())
    n = m.backbone.n_blocks
    assert sites == (
        {str(i) for i in range(n)} if placement == "per_block" else {f"{i}_{k}" for i in range(n) for k in (0, 1)}
    )
    m.module().eval()
    items = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(
            m.task_net("T2").user_vectors({"items": items}), m.task_net("T1").user_vectors({"items": items})
        )
    run_stream(cfg, "peterrec", tmp_path / "run", log=lambda *_: None)
    stored = {
        k.split(".")[1]
        for k in load_file(tmp_path / "run" / "adapters" / "T2" / "adapter.safetensors")
        if k.startswith("patches.")
    }
    assert stored == sites
