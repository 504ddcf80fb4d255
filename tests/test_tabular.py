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
model: {{field_dim: 4, d: 8, expert: [16, 8], tower: [8]}}
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
