"""A run on disk, as PEFT lays out a base model and its adapters:

    base/base.safetensors          the shared part, stored once (backbone weights; a method's per-run
    base/base.json                 extras such as Conure's uint8 owner table), its format version,
                                   method, model config, vocabulary hash and fingerprint
    adapters/<task>/adapter.safetensors    only what the task adds (a head, patches, prompts, a model)
    adapters/<task>/adapter_config.json    method, its settings, format version, task kind, classes,
                                           the fingerprint of the part of the base the task reads,
                                           the sha256 of adapter.safetensors, test metrics
    adapters/<task>/targets.parquet        only for a task with its own catalogue: its item ids

Writes are atomic and skipped when the bytes would not change, so learning a task later rewrites the
base where the method changes it and leaves every earlier adapter's files as they were. Reads check
the format version, the method, the file's sha256 and the base fingerprint, and say in one line which
file is wrong and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from .artifacts import state_fingerprint
from .data.store import vocab_hash
from .errors import LifelongrecError
from .fsutil import read_json, sha256_bytes, write_bytes_atomic, write_json_atomic

FORMAT_VERSION = 2  # of base/ and adapters/; run format 1 kept a whole artifact per task in tasks/<T>/
TARGETS = "targets.parquet"  # beside an adapter whose task has its own catalogue (own_items)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomic(path, data)
    return True


def _write_json_if_changed(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    if not (path.is_file() and path.read_bytes() == text.encode("utf-8")):
        write_json_atomic(path, obj)


def write_base(folder: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    tensors = _cpu(tensors)
    blob = save_bytes(tensors)
    _write_if_changed(folder / "base.safetensors", blob)
    info = {
        "format_version": FORMAT_VERSION,
        "kind": "base",
        **meta,
        "fingerprint": state_fingerprint(tensors),
        "sha256": sha256_bytes(blob),
        "bytes": len(blob),
    }
    _write_json_if_changed(folder / "base.json", info)
    return info


def write_adapter(
    folder: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any], targets: np.ndarray | None = None
) -> dict:
    """`targets`: a task's own catalogue (external ids, index 0 = padding), written to targets.parquet."""
    blob = save_bytes(_cpu(tensors))
    _write_if_changed(folder / "adapter.safetensors", blob)
    if targets is not None:
        buf = pa.BufferOutputStream()
        pq.write_table(pa.table({"item": pa.array([str(x) for x in targets[1:]], pa.string())}), buf)
        _write_if_changed(folder / TARGETS, buf.getvalue().to_pybytes())
    config = {"format_version": FORMAT_VERSION, **config, "sha256": sha256_bytes(blob), "bytes": len(blob)}
    _write_json_if_changed(folder / "adapter_config.json", config)
    return config


def _read_json(path: Path, what: str) -> dict:
    meta = read_json(path, f"the {what} of a lifelongrec run")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise LifelongrecError(
            f"{path}: format version {version}, this lifelongrec reads format {FORMAT_VERSION}"
            + (" (written by a newer lifelongrec: upgrade)" if newer else "")
        )
    return meta


def _read_tensors(path: Path, meta: dict, device: torch.device) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise LifelongrecError(f"{path}: missing")
    blob = path.read_bytes()
    if "sha256" in meta and sha256_bytes(blob) != meta["sha256"]:
        raise LifelongrecError(
            f"{path}: sha256 differs from the one recorded next to it ({len(blob):,} bytes, expected "
            f"{meta.get('bytes', '?'):,}): the file is truncated, damaged or replaced"
        )
    try:
        tensors = load_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise LifelongrecError(f"{path}: not a readable safetensors file ({e})") from None
    return {k: v.to(device) for k, v in tensors.items()}


def read_base(folder: Path, device: torch.device) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = _read_json(folder / "base.json", "base description (base.json)")
    return meta, _read_tensors(folder / "base.safetensors", meta, device)


def read_adapter(folder: Path, device: torch.device) -> tuple[dict, dict[str, torch.Tensor]]:
    config = _read_json(folder / "adapter_config.json", "adapter description (adapter_config.json)")
    return config, _read_tensors(folder / "adapter.safetensors", config, device)


def read_targets(folder: Path, config: dict) -> np.ndarray | None:
    """The task's own catalogue (index 0 = padding) when its head scores one (own_items), else None."""
    if "targets_hash" not in config:
        return None
    path = folder / TARGETS
    try:
        ids = pq.read_table(path).column("item").to_pylist()
    except (pa.ArrowException, KeyError, OSError) as e:
        raise LifelongrecError(f"{path}: the task's own item catalogue cannot be read ({e})") from None
    items = np.array(["", *ids], dtype=object)
    if vocab_hash(items) != config["targets_hash"]:
        raise LifelongrecError(f"{path}: differs from the catalogue recorded in adapter_config.json (targets_hash)")
    return items


def check_base_fingerprint(folder: Path, config: dict, reads: dict[str, torch.Tensor]) -> None:
    got = state_fingerprint(reads)
    if got != config.get("base_fingerprint"):
        raise LifelongrecError(
            f"{folder / 'adapter_config.json'}: this adapter was trained on another base (base fingerprint "
            f"{str(config.get('base_fingerprint'))[:12]}..., the loaded base gives {got[:12]}...): "
            "load it with the base it was learned on"
        )


def read_run_json(out: Path) -> dict:
    """run.json of a run folder in this lifelongrec's format (a clear error for any other)."""
    f = out / "run.json"
    if not out.is_dir():
        raise LifelongrecError(f"{out}: not a folder (expected a stream run folder)")
    if not f.is_file():
        raise LifelongrecError(f"{out}: not a stream run folder (no run.json)")
    run = read_json(f, "a stream run's run.json")
    missing = [k for k in ("method", "order", "vocab_hash") if k not in run]
    if run.get("version") == FORMAT_VERSION and (missing or not isinstance(run.get("order"), list)):
        raise LifelongrecError(f"{f}: not a complete run description (missing or bad: {missing or ['order']})")
    if run.get("version") != FORMAT_VERSION:
        raise LifelongrecError(
            f"{f}: run format {run.get('version')}, this lifelongrec reads run format {FORMAT_VERSION} "
            "(format 1 stored a whole artifact per task in tasks/<T>/; format 2 stores base/ once and "
            "adapters/<T>/): rerun the stream with this version"
        )
    return run
