"""Regression pins of every method's accuracy matrix, recorded with the code before the method-contract
redesign (bench/pin_matrices.py record, same seeds): the redesign must reproduce them exactly.

The synthetic pins run in seconds; the ML-100K pins (2 epochs per task, one thread) are real-data
tests, skipped when the data cannot be fetched. The NextItNet ML-100K pin is bound to the machine kind
that recorded it (its rounding differs between processors; bench/RESULTS.md, "Correction, 2026-12-02")
and is skipped on others. Rerun by hand: python bench/pin_matrices.py check FILE
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic import synthetic_config

from lifelongrec.config import load_config
from lifelongrec.device import cpu_fingerprint
from lifelongrec.errors import FetchError
from lifelongrec.runner import run_stream

PINS = Path(__file__).parent / "pins"
ML100K_METHODS = ["seqft", "sinmo", "finesmax", "stl", "mtl", "peterrec", "conure"]


def _matrix(run: Path) -> list[list[float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    order = [r["task"] for r in rows]
    metric = {r["task"]: r["metric"] for r in rows}
    return [[float(r["test_after"][t][metric[t]]) for t in order[: i + 1]] for i, r in enumerate(rows)]


def _check(pin: dict, cfg, tmp_path: Path, methods: list[str] | None = None) -> None:
    for method in methods or list(pin["matrices"]):
        run_stream(cfg, method, tmp_path / method, log=lambda *_: None)
        assert _matrix(tmp_path / method) == pin["matrices"][method], method  # exactly: same seeds, arithmetic


@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_synthetic_matrices_are_unchanged(tmp_path, backbone):
    pin = json.loads((PINS / f"synthetic_{backbone}.json").read_text())
    assert pin["synthetic"] == backbone
    cfg = load_config(synthetic_config(tmp_path / "data", backbone), pin["set"])
    _check(pin, cfg, tmp_path)


def test_paper_recipe_matrices_are_unchanged(tmp_path):
    """The training paths of configs/ml1m_paper.yaml, which the pins above do not take: T1 by sampled
    softmax, item tasks by BPR over popularity negatives in batches of targets; and the methods added
    after the pins above (PCL, both MPT-Rec forms). Recorded 2026-12-01:
    python bench/pin_matrices.py record tests/pins/synthetic_paper_recipe.json --synthetic nextitnet
    --set train.epochs=2 --set train.patience=5 --set train.loss=sampled --set train.item_loss=bpr
    --set train.negatives=popularity --set train.item_batch=targets
    --methods stl,conure,peterrec,pcl,mptrec,mptrec_faithful"""
    pin = json.loads((PINS / "synthetic_paper_recipe.json").read_text())
    cfg = load_config(synthetic_config(tmp_path / "data", pin["synthetic"]), pin["set"])
    _check(pin, cfg, tmp_path)


@pytest.mark.realdata
@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
# One test per method (each a stream of six tasks): the slowest tests of the suite, spread over workers.
@pytest.mark.parametrize("method", ML100K_METHODS)
def test_ml100k_matrices_are_unchanged(tmp_path, backbone, method):
    from lifelongrec.data.sources import fetch

    try:
        fetch("ml-100k", quiet=True)
    except FetchError as e:
        pytest.skip(f"cannot fetch ml-100k: {e}")
    pin = json.loads((PINS / f"ml100k_{backbone}.json").read_text())
    if pin.get("machine") not in (None, cpu_fingerprint()):
        # Measured: NextItNet's matrices on ML-100K differ in the 4th significant digit between an AMD
        # EPYC (AVX2) machine, CI's machine and the one that first recorded them, and finetuning the
        # whole model through five tasks (seqft) turns that into accuracy differences of 0.09; SASRec's
        # are identical on all three. A pin bound to a machine kind is exact there and skipped elsewhere.
        # Measured 2026-12-02: an AVX-512 EPYC reproduces this AVX2 pin exactly when PyTorch, MKL and
        # oneDNN are held to AVX2 (bench/RESULTS.md, "Correction, 2026-12-02"); not done here because
        # those variables act at import, before a test runs.
        pytest.skip(
            f"pin recorded on '{pin['machine']}', this machine is '{cpu_fingerprint()}' (by hand: "
            "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/pin_matrices.py check FILE)"
        )
    assert sorted(pin["matrices"]) == sorted(ML100K_METHODS)
    _check(pin, load_config(pin["config"], pin["set"]), tmp_path, [method])
