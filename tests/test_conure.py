"""Conure: the stage machine, ownership, pruning, and exactly zero forgetting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic import synthetic_config

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.errors import LifelongrecError
from lifelongrec.methods import TaskInfo, build_method
from lifelongrec.methods.conure import IllegalTransition, Stage, Stages
from lifelongrec.runner import run_stream

FAST = ["train.epochs=2", "train.patience=5"]


def test_stages_refuse_illegal_transitions():
    s = Stages()
    with pytest.raises(IllegalTransition, match="new -> prune"):
        s.advance("T1", Stage.PRUNE)
    for st in (Stage.TRAIN, Stage.PRUNE, Stage.RETRAIN, Stage.FROZEN):
        s.advance("T1", st)
    with pytest.raises(IllegalTransition, match="frozen -> train"):
        s.advance("T1", Stage.TRAIN)
    s.advance("T2", Stage.TRAIN)
    with pytest.raises(IllegalTransition, match="train -> retrain"):
        s.advance("T2", Stage.RETRAIN)


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_conure_stream_never_forgets_and_records_conure_minus(tmp_path, backbone):
    import json

    cfg = load_config(synthetic_config(tmp_path, backbone), [*FAST, "train.weight_decay=0.01"])
    s = run_stream(cfg, "conure", tmp_path / "run", log=lambda *_: None)
    lines = (tmp_path / "run" / "matrix.csv").read_text().splitlines()[1:]
    R = [[float(x) if x else np.nan for x in line.split(",")[1:]] for line in lines]
    for i in range(3):
        for j in range(i):
            assert R[i][j] == R[j][j]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("conure_minus" in r["phase_metrics"] for r in rows)
    assert s["backbones_stored"] == 1
    assert (tmp_path / "run" / "tasks" / "T2" / "phase1" / "metrics.jsonl").is_file()  # retrained


def test_pruning_frees_the_smallest_weights_per_tensor(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "method.name=conure", "method.prune=[0.5, 0.25]"])
    stream, _ = open_stream(cfg)
    m = build_method("conure", cfg, stream)
    t1 = TaskInfo("T1", "next_item", 0)
    m.before_task(t1)
    m.stages.advance("T1", Stage.PRUNE)
    before = {n: w.detach().abs().clone() for n, w in m._weights().items()}
    m.prune(t1)
    for n, w in m._weights().items():
        free = m.owners[n] == 0
        assert int(free.sum()) == int(0.5 * w.numel())
        assert before[n][free].max() <= before[n][~free].min()  # ranked within this tensor
        assert torch.equal(w.detach().abs()[free], before[n][free])  # freed, not zeroed: values kept
    m.stages.advance("T1", Stage.RETRAIN)
    m.stages.advance("T1", Stage.FROZEN)
    m.after_task(t1)
    m.before_task(TaskInfo("T2", "item_rec", 1))
    for n in m.owners.names:
        assert set(m.owners[n].unique().tolist()) == {1, 2}  # the free space now belongs to T2
    table = m.owner_table()
    assert table and all(t.dtype == torch.uint8 for t in table.values())


def test_later_training_leaves_earlier_outputs_bit_identical(tmp_path):
    """Train T2 with weight decay and Adam; T1's user vectors and scores do not change by a single bit."""
    cfg = load_config(synthetic_config(tmp_path), ["train.epochs=3", "train.weight_decay=0.05"])
    run_stream(cfg, "conure", tmp_path / "a", order=["T1"], log=lambda *_: None)
    stream, _ = open_stream(cfg)
    from safetensors.torch import load_file

    from lifelongrec.predict import Predictor

    p1 = Predictor(tmp_path / "a")
    hist = [stream.items[i] for i in stream.seq_items[:12]]
    before = p1.embed("T1", hist)["vector"], p1.recommend("T1", hist, k=20)
    run_stream(cfg, "conure", tmp_path / "b", order=["T1", "T2", "T3"], log=lambda *_: None)
    p2 = Predictor(tmp_path / "b")
    after = p2.embed("T1", hist)["vector"], p2.recommend("T1", hist, k=20)
    assert before == after
    a = load_file(tmp_path / "a" / "base" / "base.safetensors")
    b = load_file(tmp_path / "b" / "base" / "base.safetensors")
    owned = [k for k in b if k.startswith("owner.")]
    assert owned
    for k in owned:  # every weight T1 owns is unchanged in the final backbone
        w = "backbone." + k[len("owner.") :]
        assert torch.equal(a[w][b[k] == 1], b[w][b[k] == 1]), k
    # and T1's adapter (its head) is byte for byte the same file
    ta, tb = (tmp_path / x / "adapters" / "T1" / "adapter.safetensors" for x in ("a", "b"))
    assert ta.read_bytes() == tb.read_bytes()


def test_report_shows_conure_minus(tmp_path):
    from lifelongrec.report import report

    cfg = load_config(synthetic_config(tmp_path), FAST)
    run_stream(cfg, "conure", tmp_path / "run", log=lambda *_: None)
    text = report([tmp_path / "run"], tmp_path / "rep", plots=False)
    rows = [x for x in text.splitlines() if x.startswith("| conure")]
    assert len(rows) == 2 and rows[1].startswith("| conure- (before pruning)")
    assert len(rows[0].split("|")) == len(rows[1].split("|"))


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_pruning_the_embedding_matrix_too(tmp_path, backbone):
    cfg = load_config(
        synthetic_config(tmp_path, backbone), [*FAST, "method.name=conure", "method.prune_embedding=true"]
    )
    run_stream(cfg, "conure", tmp_path / "run", log=lambda *_: None)
    lines = (tmp_path / "run" / "matrix.csv").read_text().splitlines()[1:]
    R = [[float(x) if x else np.nan for x in line.split(",")[1:]] for line in lines]
    assert R[2][0] == R[0][0] and R[2][1] == R[1][1]
    from safetensors.torch import load_file

    sd = load_file(tmp_path / "run" / "base" / "base.safetensors")
    owner = sd["owner.item_embedding.weight"]
    emb = sd["backbone.item_embedding.weight"]
    assert set(owner.unique().tolist()) >= {1, 2} and (emb[0] == 0).all()  # shared; padding row untouched


def test_overparam_phase_metrics_from_a_pretrained_t1(tmp_path):
    """The Fig. 3 protocol on synthetic data: unpruned, pruned without retraining, and retrained."""
    import json

    from lifelongrec.pretrain import pretrain

    # dropout > 0: the unpruned metric must be measured in inference mode although the loaded T1 never
    # went through the training loop (a bug found on ML-1M: dropout was on during that evaluation)
    cfg = load_config(
        synthetic_config(tmp_path), [*FAST, "method.name=conure", "method.prune=[0.7]", "model.dropout=0.5"]
    )
    stream, _ = open_stream(cfg)
    meta = pretrain(cfg, stream, tmp_path / "pre", log=lambda *_: None)
    run_stream(cfg, "conure", tmp_path / "run", order=["T1"], init_from=tmp_path / "pre", log=lambda *_: None)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert row["phase_metrics"]["conure_minus"] == meta["test"]  # every metric, exactly
    assert "pruned_before_retrain" in row["phase_metrics"]


def test_a_branch_after_t1_continues_exactly_like_an_unbroken_run(tmp_path):
    """`--branch-from`: one Conure T1 shared by several later orders/seeds (the Table-3/4 scripts)."""
    cfg = load_config(synthetic_config(tmp_path), FAST)
    quiet = {"log": lambda *_: None}
    run_stream(cfg, "conure", tmp_path / "straight", order=["T1", "T3"], **quiet)
    run_stream(cfg, "conure", tmp_path / "t1", order=["T1"], **quiet)
    run_stream(cfg, "conure", tmp_path / "branch", order=["T1", "T3"], branch_from=tmp_path / "t1", **quiet)
    assert (tmp_path / "branch" / "matrix.csv").read_text() == (tmp_path / "straight" / "matrix.csv").read_text()
    run = json.loads((tmp_path / "branch" / "run.json").read_text())
    assert run["status"] == "complete" and run["branched_from"] == str(tmp_path / "t1")
    run_stream(cfg, "conure", tmp_path / "branch", order=["T1", "T3"], resume=True, **quiet)  # keeps its origin
    assert json.loads((tmp_path / "branch" / "run.json").read_text())["branched_from"] == str(tmp_path / "t1")

    with pytest.raises(LifelongrecError, match="not a proper prefix"):
        run_stream(cfg, "conure", tmp_path / "b2", order=["T1"], branch_from=tmp_path / "t1", **quiet)
    with pytest.raises(LifelongrecError, match=r"differs in \['method'\]"):
        other = load_config(synthetic_config(tmp_path), [*FAST, "method.name=conure", "method.prune=[0.3]"])
        run_stream(other, "conure", tmp_path / "b3", order=["T1", "T2"], branch_from=tmp_path / "t1", **quiet)
    with pytest.raises(LifelongrecError, match="method conure, not peterrec"):
        run_stream(cfg, "peterrec", tmp_path / "b4", order=["T1", "T2"], branch_from=tmp_path / "t1", **quiet)


def test_a_later_task_reads_the_weights_earlier_tasks_own(tmp_path):
    """T2 computes with T1's weights (owner <= 2), not only its own: change a weight T1 owns and T2's
    user vectors change; change a weight still free (owned by no task yet) and they do not."""
    cfg = load_config(synthetic_config(tmp_path), [*FAST, "method.name=conure", "method.prune=[0.5]"])
    stream, _ = open_stream(cfg)
    m = build_method("conure", cfg, stream)
    for i, (t, kind) in enumerate([("T1", "next_item"), ("T2", "item_rec")]):
        info = TaskInfo(t, kind, i)
        m.before_task(info)
        m.stages.advance(t, Stage.PRUNE)
        m.prune(info)
        m.stages.advance(t, Stage.RETRAIN)
        m.stages.advance(t, Stage.FROZEN)
        m.after_task(info)
    m.module().eval()
    items = torch.tensor([[3, 4, 5, 6]])
    name = next(iter(m.owners.names))
    w, owner = m._weights()[name], m.owners[name]
    assert (owner == 1).any() and (owner == 0).any()

    def t2_vector():
        with torch.no_grad():
            return m.task_net("T2").user_vectors({"items": items}).clone()

    ref = t2_vector()
    with torch.no_grad():
        w[owner == 0] += 1.0  # free weights: no task reads them yet
    assert torch.equal(t2_vector(), ref)
    with torch.no_grad():
        w[owner == 1] += 1.0  # T1's weights: T2 reads them
    assert not torch.allclose(t2_vector(), ref)


def test_prune_ratios_by_task_name(tmp_path):
    cfg = load_config(
        synthetic_config(tmp_path),
        [*FAST, "method.name=conure", "method.prune=[0.5]", "method.prune_by_task={T1: 0.25}"],
    )
    stream, _ = open_stream(cfg)
    m = build_method("conure", cfg, stream)
    t1 = TaskInfo("T1", "next_item", 0)
    m.before_task(t1)
    m.stages.advance("T1", Stage.PRUNE)
    m.prune(t1)
    for n, w in m._weights().items():
        assert int((m.owners[n] == 0).sum()) == int(0.25 * w.numel())


def test_conure_shares_the_task_budget_between_its_phases(tmp_path):
    """Equal budgets: with train.epochs = E, Conure's training and retraining together run at most E
    epochs per task (retrain_share of them retraining); budget=per_phase gives each phase E."""
    cfg = load_config(synthetic_config(tmp_path), ["train.epochs=4", "train.patience=9", "method.name=conure"])
    run_stream(cfg, "conure", tmp_path / "shared", order=["T1", "T2"], log=lambda *_: None)
    for t in ("T1", "T2"):
        train = (tmp_path / "shared" / "tasks" / t / "train" / "metrics.jsonl").read_text().splitlines()
        retrain = (tmp_path / "shared" / "tasks" / t / "phase1" / "metrics.jsonl").read_text().splitlines()
        assert (len(train), len(retrain)) == (2, 2)
    per = load_config(
        synthetic_config(tmp_path),
        ["train.epochs=4", "train.patience=9", "method.name=conure", "method.budget=per_phase"],
    )
    run_stream(per, "conure", tmp_path / "per", order=["T1"], log=lambda *_: None)
    assert len((tmp_path / "per" / "tasks" / "T1" / "phase1" / "metrics.jsonl").read_text().splitlines()) == 4
