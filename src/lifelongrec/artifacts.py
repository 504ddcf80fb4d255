"""Saved models: safetensors weights + a JSON description. No pickle anywhere a user may load a file.

A backbone artifact is `backbone.safetensors` (tensors named `backbone.*` and `head.*`) and
`backbone.json` (format version, configs, vocabulary hash, metrics, the sha256 of the weights). The
JSON is written last, so its presence means the artifact is complete; loading checks the version and
the weights' hash before building anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from . import __version__
from .config import BackboneConfig
from .errors import LifelongrecError
from .fsutil import read_json, sha256_bytes, write_bytes_atomic, write_json_atomic

FORMAT_VERSION = 1


def nbytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors' data (what a safetensors file holds besides its JSON header)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes, from any device and of any dtype (bfloat16 has no numpy type)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and raw tensor bytes, in name order."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(tensor_bytes(v))
    return h.hexdigest()


def save_backbone(out: Path, backbone: torch.nn.Module, head: torch.nn.Module, meta: dict[str, Any]) -> Path:
    tensors = {f"backbone.{k}": v.detach().contiguous() for k, v in backbone.state_dict().items()}
    tensors.update({f"head.{k}": v.detach().contiguous() for k, v in head.state_dict().items()})
    blob = save(tensors)
    write_bytes_atomic(out / "backbone.safetensors", blob)
    write_json_atomic(
        out / "backbone.json",
        {
            "format_version": FORMAT_VERSION,
            "kind": "backbone",
            "lifelongrec_version": __version__,
            "weights_sha256": sha256_bytes(blob),
            **meta,
        },
    )
    return out


def read_backbone_meta(path: Path) -> dict[str, Any]:
    mf = path / "backbone.json"
    if not mf.is_file():
        raise LifelongrecError(f"{path}: no backbone.json (expected a folder written by `lifelongrec pretrain`)")
    meta = read_json(mf, "the description of a `lifelongrec pretrain` backbone")
    if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != "backbone":
        raise LifelongrecError(f"{mf}: not a backbone artifact of format {FORMAT_VERSION}")
    return meta


def load_backbone(path: Path):
    """Return (backbone, head, meta), weights verified against the recorded hash."""
    from .backbones import build_backbone
    from .heads import ItemHead

    meta = read_backbone_meta(path)
    blob = (path / "backbone.safetensors").read_bytes()
    if sha256_bytes(blob) != meta.get("weights_sha256"):
        raise LifelongrecError(f"{path}/backbone.safetensors: sha256 differs from backbone.json (corrupt or replaced)")
    try:
        tensors = load(blob)
        cfg = BackboneConfig.model_validate(meta["model"])
        backbone = build_backbone(cfg, meta["n_items"])
        backbone.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")})
        head = ItemHead(cfg.d, meta["n_items"], tied=backbone.item_embedding if meta.get("tied_head") else None)
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise LifelongrecError(f"{path}: backbone.json and backbone.safetensors do not fit together ({e})") from None
    return backbone.eval(), head.eval(), meta
