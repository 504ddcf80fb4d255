"""Tabular multi-task data (MPT-Rec's setting): fields, labels, split, and what bad input gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write

from lifelongrec.errors import DataError
from lifelongrec.tabular.config import load_tabular_config
from lifelongrec.tabular.data import TEST, TRAIN, build_tabular


def table(folder: Path, n: int = 200, seed: int = 0, extra_rows: str = "") -> Path:
    """Rows of (color, size, city, score) with two learnable labels and one new task."""
    rng = np.random.default_rng(seed)
    lines = ["color,size,city,score,buys,big,local"]
    for _ in range(n):
        color, size = rng.choice(["red", "blue", "green"]), int(rng.integers(1, 50))
        city = rng.choice(["a", "b", "?"])
        lines.append(
            f"{color},{size},{city},{rng.normal():.3f},{'yes' if color == 'red' else 'no'},"
            f"{'Y' if size > 25 else 'N'},{'L' if city == 'a' else 'F'}"
        )
    return write(folder / "rows.csv", "\n".join(lines) + "\n" + extra_rows)


def config(folder: Path, csv: Path, extra: str = "") -> Path:
    p = folder / "tab.yaml"
    p.write_text(
        f"""
setting: tabular
name: toy
source: {{path: {csv}, format: csv}}
categorical: [color, city]
numeric: {{columns: [size, score], bins: 4}}
missing: ["?"]
tasks:
  - {{name: buys, column: buys, positive: ["yes"]}}
  - {{name: big, column: big, positive: ["Y"]}}
  - {{name: local, column: local, positive: ["L"]}}
pretrain: [buys, big]
split: {{mode: train_rows, train_rows: [0, 150], seed: 1}}
model: {{field_dim: 4, expert: [16, 8], tower: [8]}}
train: {{epochs: 3, patience: 3, batch_size: 32, seed: 0, threads: 1}}
{extra}
"""
    )
    return p


def test_fields_labels_and_split(tmp_path):
    csv = table(tmp_path)
    d = build_tabular(load_tabular_config(config(tmp_path, csv)))
    assert d.names == ["color", "city", "size", "score"] and d.fields.shape == (200, 4)
    assert d.cardinalities[:2] == [4, 3]  # three colours + unknown; a, b + unknown ("?" is missing)
    assert (d.split[:150] == TRAIN).all() and set(d.split[150:].tolist()) == {1, 2}
    assert d.fields[:, 1].min() == 0  # "?" went to the unknown bucket
    assert set(d.labels) == {"buys", "big", "local"}
    red = d.fields[:, 0] == 3  # sorted vocabulary: blue 1, green 2, red 3
    assert (d.labels["buys"][red] == 1).all() and (d.labels["buys"][~red] == 0).all()
    assert d.fields[:, 2].max() <= d.cardinalities[2] - 1


def test_an_unseen_category_goes_to_the_unknown_bucket_and_is_counted(tmp_path):
    csv = table(tmp_path, extra_rows="purple,3,a,0.1,no,N,L\n")  # row 201: a test row, colour never trained on
    d = build_tabular(load_tabular_config(config(tmp_path, csv)))
    assert d.fields[200, 0] == 0 and d.split[200] != TRAIN
    split = "test" if d.split[200] == TEST else "valid"
    assert d.unknown == {"color": {"train": 0, "valid": 0, "test": 0, split: 1}}


def test_bad_input_is_named(tmp_path):
    csv = table(tmp_path)
    text = csv.read_text().replace(",buys,", ",purchase,")
    csv.write_text(text)
    with pytest.raises(DataError, match=r"rows.csv: missing column 'buys' \(the label of task buys\)"):
        build_tabular(load_tabular_config(config(tmp_path, csv)))
    csv = table(tmp_path, extra_rows="red,x7,a,0.1,yes,N,L\n")
    with pytest.raises(DataError, match=r"row 201, field 'size': value 'x7' is not a number"):
        build_tabular(load_tabular_config(config(tmp_path, csv)))
    csv = table(tmp_path, extra_rows="red,7,a,0.1,,N,L\n")
    with pytest.raises(DataError, match=r"row 201, field 'buys': task buys: missing label"):
        build_tabular(load_tabular_config(config(tmp_path, csv)))
    csv = table(tmp_path)
    cfg = load_tabular_config(config(tmp_path, csv), ["tasks.0.positive=[maybe]"])
    with pytest.raises(DataError, match="every training row has label 0"):
        build_tabular(cfg)


def test_mptrec_new_task_has_the_authors_parameter_count():
    """Census shapes (mptrec.md section 4): D_in 123, d 128, towers [64, 32]: 27,063 trainable."""
    from lifelongrec.tabular.config import MPTRecSettings, TabularModel
    from lifelongrec.tabular.mptrec import MPTRec, MPTRecNewTask

    m = TabularModel(field_dim=3, expert=[256, 128], tower=[64, 32])
    base = MPTRec([5] * 41, m, ["a", "b"], n_train_rows=10)  # 41 fields x 3 = 123 inputs
    new = MPTRecNewTask(base, m, MPTRecSettings(), "c")
    assert sum(p.numel() for p in new.parameters() if p.requires_grad) == 27_063
    fixed = MPTRecNewTask(base, m, MPTRecSettings(attention="fixed", gate="fixed"), "c")
    assert sum(p.numel() for p in fixed.parameters() if p.requires_grad) == 128 + 10_369  # prompt + tower


def test_stage_one_resumes_exactly(tmp_path):
    """The environment labels and the epoch counter live in the model's state: 2 + 2 epochs = 4."""
    import torch

    from lifelongrec.tabular.mptrec import MPTRec
    from lifelongrec.tabular.train import train_model

    cfg = load_tabular_config(config(tmp_path, table(tmp_path, n=300)), ["mptrec.recluster_every=1"])
    data = build_tabular(cfg)

    class Killed(Exception):
        pass

    def kill_after_epoch_2(msg, *a, **k):
        if msg.startswith("epoch 2:"):  # logged after the epoch's checkpoint is written
            raise Killed

    def learn(out, log=None):
        torch.manual_seed(0)
        model = MPTRec(data.cardinalities, cfg.model, cfg.pretrain, len(data.rows(TRAIN)))
        train = cfg.train.model_copy(update={"epochs": 4, "patience": 9})
        return train_model(data, model, cfg.mptrec, train, out, log)[1].model

    once = learn(tmp_path / "once")
    with pytest.raises(Killed):
        learn(tmp_path / "twice", kill_after_epoch_2)
    again = learn(tmp_path / "twice")
    for (k, a), b in zip(once.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_experiment_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from lifelongrec.cli import app

    cfg = config(tmp_path, table(tmp_path, n=300))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["tabular", "run", "--config", str(cfg), "--seeds", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for method in ("mptrec", "shared_bottom*", "mmoe*", "ple*", "single_task", "full_retraining"):
        assert f"| {method} |" in r.output
    assert r.output.count("yes, every seed") == 4  # the four frozen-stage-1 methods keep the old tasks
    assert "*logistic_regression* (reference)" in r.output and (out / "report.md").is_file()
    bad = CliRunner().invoke(app, ["tabular", "run", "--config", str(cfg), "--methods", "maml"])
    assert bad.exit_code != 0 and "unknown methods ['maml']" in bad.output
    # Other settings into the same folder: refused by the checkpoints, not silently continued.
    other = ["tabular", "run", "--config", str(cfg), "--seeds", "1", "--out", str(out), "--set", "model.field_dim=2"]
    r = CliRunner().invoke(app, [*other, "--methods", "mptrec"])
    assert r.exit_code != 0 and "trained with other settings" in str(r.exception or r.output)


def test_a_label_column_of_many_values_is_one_against_the_rest(tmp_path):
    """A task's label is 1 where its column holds one of `positive`, 0 for every other value."""
    csv = table(tmp_path)
    cfg = load_tabular_config(
        config(tmp_path, csv),
        ["categorical=[color]", "missing=[]", "tasks.2.column=city", "tasks.2.positive=[a]"],
    )
    d = build_tabular(cfg)
    city = np.array([line.split(",")[2] for line in csv.read_text().splitlines()[1:]])
    assert set(city) == {"a", "b", "?"}
    assert (d.labels["local"] == (city == "a")).all()
