"""The files of a run folder that a report, predict and serve read, derived from the runner's state:
the base and every learned task's adapter (adapters.py lays them out), `metrics.jsonl`, `matrix.csv`
(R[i][j]: task j's test metric after learning task i) and `summary.json` (continual summaries, costs
and sizes per task). Every write is atomic and skipped when the bytes would not change.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from . import __version__
from .adapters import write_adapter, write_base
from .artifacts import nbytes, state_fingerprint
from .config import StreamConfig
from .continual import summary as continual_summary
from .data.store import vocab_hash
from .fsutil import write_json_atomic, write_text_atomic
from .objectives import task_pooling


def matrix_csv(order: list[str], R: list[list[float]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["after", *order])
    for i, row in enumerate(R):
        w.writerow([order[i], *[("" if j > i else f"{row[j]:.6f}") for j in range(len(order))]])
    return buf.getvalue()


def square(R: list[list[float]], n: int) -> np.ndarray:
    M = np.full((n, n), math.nan)
    for i, row in enumerate(R):
        M[i, : i + 1] = row[: i + 1]
    return M


def export_run(out: Path, method, cfg: StreamConfig, stream, rows: list[dict]) -> dict[str, dict]:
    """Write the base and every learned task's adapter (files whose bytes do not change are left alone).
    Each adapter records the fingerprint of the part of the base it reads and its latest test metrics.
    Returns per task the bytes its adapter adds (tensor bytes) and the adapter file's size."""
    base = {k: v.detach().cpu() for k, v in method.base_tensors().items()}
    kinds = {t.name: t for t in cfg.tasks}
    base_info = write_base(
        out / "base",
        base,
        {
            "method": method.name,
            "model": cfg.model.model_dump(mode="json"),
            "n_items": stream.n_items,
            "vocab_hash": stream.manifest["vocab_hash"],
            "max_length": cfg.sequence.max_length,
        },
    )
    latest = rows[-1]["test_after"]
    sizes = {}
    for r in rows:
        task = r["task"]
        td = stream.task(task)
        train = cfg.train_for(r["index"], task)
        config = {
            "method": method.name,
            "settings": cfg.method.model_dump(mode="json") if cfg.method else {"name": method.name},
            "task": task,
            "kind": kinds[task].kind,
            "index": r["index"],
            "classes": td.classes,
            "n_items": stream.n_items,
            "vocab_hash": stream.manifest["vocab_hash"],
            "model": cfg.model.model_dump(mode="json"),
            "max_length": cfg.input_length(train),  # how many of the latest items a user vector reads
            "pooling": task_pooling(td.kind, train),  # which user vector the head reads
            "lifelongrec_version": __version__,
        }
        config["base_fingerprint"] = state_fingerprint(type(method).base_reads(base, config))
        if td.items is not None:  # own_items: the head scores the task's catalogue, listed beside it
            config["n_targets"] = len(td.items) - 1
            config["targets_hash"] = vocab_hash(td.items)
        config["metrics"] = latest[task]
        tensors = method.export(task)
        written = write_adapter(out / "adapters" / task, tensors, config, targets=td.items)
        sizes[task] = {"adapter_bytes": nbytes(tensors), "adapter_file_bytes": written["bytes"]}
    sizes["_base"] = {"base_bytes": nbytes(base), "base_file_bytes": base_info["bytes"]}
    return sizes


def write_reports(out: Path, order: list[str], done: dict, method, sizes: dict) -> None:
    rows = done["rows"]
    write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / "matrix.csv", matrix_csv(order, done["R"]))
    learned = [r["task"] for r in rows]
    s = continual_summary(square(done["R"], len(learned)), metrics=[r["metric"] for r in rows])
    s = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in s.items()}
    s["forgetting"] = [None if (x is None or math.isnan(x)) else x for x in s["forgetting"]]
    write_json_atomic(
        out / "summary.json",
        {
            "method": method.name,
            "tasks": learned,
            "metrics": [r["metric"] for r in rows],
            **s,
            "backbones_stored": method.backbones_stored(),
            "reference_for_fwt": method.fwt_reference,
            "report_phases": method.report_phases,
            **sizes["_base"],
            "adapter_bytes": {t: v["adapter_bytes"] for t, v in sizes.items() if t != "_base"},
            "adapter_file_bytes": {t: v["adapter_file_bytes"] for t, v in sizes.items() if t != "_base"},
            "trainable_parameters": [r["trainable_parameters"] for r in rows],
            "added_bytes": [r["added_bytes"] for r in rows],
            "train_seconds": [r["train_seconds"] for r in rows],
            "complete": len(rows) == len(order),
        },
    )
