"""Inference on raw histories with external ids: the Python API behind `lifelongrec predict`.

    p = Predictor("runs/ml1m/stream-peterrec")
    p.recommend("T2", ["Toy Story (1995)", "Heat (1995)"], k=10, exclude_seen=True)
    p.classify("T4", [...]); p.embed("T4", [...])

A task's network is rebuilt from the run's own files: the task artifact (safetensors + JSON), and the
shared backbone from the first task's artifact when the task stores none, checked against the
fingerprint recorded for the task. Unknown item ids are reported back, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from .artifacts import state_fingerprint
from .backbones import build_backbone
from .config import BackboneConfig
from .errors import LifelongrecError
from .heads import ClassHead, ItemHead


@dataclass
class TaskModel:
    kind: str
    encode: object
    head: torch.nn.Module
    classes: list[str] | None


def _resolve_owned(sd: dict[str, torch.Tensor], view: int) -> dict[str, torch.Tensor]:
    """Weights stored with a per-weight owner (Conure) become plain weights holding only the entries of
    tasks 1..view, exactly what the method's forward pass uses for that task."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".parametrizations.weight.original"):
            base = k[: -len("parametrizations.weight.original")]
            owner = sd[base + "parametrizations.weight.0.owner"]
            out[base + "weight"] = v * ((owner >= 1) & (owner <= view))
        elif not k.endswith(".owner"):
            out[k] = v
    return out


class Predictor:
    def __init__(self, run_dir: str | Path) -> None:
        self.run = Path(run_dir)
        try:
            self.meta = json.loads((self.run / "run.json").read_text())
        except FileNotFoundError:
            raise LifelongrecError(f"{self.run}: not a stream run folder (no run.json)") from None
        items_file = self.run / "items.parquet"
        if not items_file.is_file():
            raise LifelongrecError(f"{self.run}: items.parquet is missing (the run's item vocabulary)")
        ext = pq.read_table(items_file).column("item").to_pylist()
        self.items = np.array([""] + ext, dtype=object)
        self.index = {x: i + 1 for i, x in enumerate(ext)}
        self._models: dict[str, TaskModel] = {}

    @property
    def tasks(self) -> list[str]:
        return [t for t in self.meta["order"] if (self.run / "tasks" / t / "artifact.json").is_file()]

    def _artifact(self, task: str) -> tuple[dict, dict[str, torch.Tensor]]:
        folder = self.run / "tasks" / task
        if task not in self.tasks:
            raise LifelongrecError(f"unknown task '{task}' for this run (learned: {', '.join(self.tasks) or 'none'})")
        return json.loads((folder / "artifact.json").read_text()), load_file(folder / "artifact.safetensors")

    def model(self, task: str) -> TaskModel:
        if task in self._models:
            return self._models[task]
        meta, sd = self._artifact(task)
        if meta["vocab_hash"] != self.meta["vocab_hash"]:
            raise LifelongrecError(f"{task}: artifact vocabulary differs from the run's")
        cfg = BackboneConfig.model_validate(meta["model"])
        backbone = build_backbone(cfg, meta["n_items"])
        part = {k[9:]: v for k, v in sd.items() if k.startswith("backbone.")}
        if not part:  # a shared backbone: it lives in the first task's artifact
            part = {k[9:]: v for k, v in self._artifact(self.meta["order"][0])[1].items() if k.startswith("backbone.")}
        if state_fingerprint(part) != meta["backbone_fingerprint"]:
            raise LifelongrecError(f"{task}: the backbone found does not match the fingerprint in artifact.json")
        backbone.load_state_dict(_resolve_owned(part, meta["index"] + 1))
        patches = {k[8:]: v for k, v in sd.items() if k.startswith("patches.")}
        if patches:
            from .methods.peterrec import Patch

            blocks = sorted({k.split(".")[0] for k in patches}, key=int)
            k_dim = patches[f"{blocks[0]}.down.weight"].shape[0]
            mode = json.loads((self.run / "config.json").read_text())["method"]["peterrec_mode"]
            backbone.patches = torch.nn.ModuleDict({b: Patch(cfg.d, k_dim, mode) for b in blocks})
            backbone.patches.load_state_dict(patches)
        head_sd = {k[5:]: v for k, v in sd.items() if k.startswith("head.")}
        if meta["kind"] == "classify":
            head = ClassHead(cfg.d, len(meta["classes"]))
        else:
            tied = backbone.item_embedding if "weight" not in head_sd else None
            head = ItemHead(cfg.d, meta["n_items"], tied=tied)
        head.load_state_dict(head_sd)
        backbone.eval()
        head.eval()
        self.max_length = meta["max_length"]
        m = self._models[task] = TaskModel(meta["kind"], backbone.encode, head, meta.get("classes"))
        return m

    def _ids(self, history: list[str]) -> tuple[torch.Tensor, list[str]]:
        if not history:
            raise LifelongrecError("empty history: give at least one item id")
        known = [self.index[h] for h in history if h in self.index]
        unknown = [h for h in history if h not in self.index]
        if not known:
            raise LifelongrecError(f"none of the {len(history)} item ids is in this run's vocabulary: {unknown[:5]}")
        return torch.tensor([known[-self.max_length :]]), unknown

    @torch.no_grad()
    def embed(self, task: str, history: list[str]) -> dict:
        m = self.model(task)
        ids, unknown = self._ids(history)
        return {"task": task, "vector": m.encode(ids)[0, -1].tolist(), "unknown_items": unknown}

    @torch.no_grad()
    def recommend(self, task: str, history: list[str], k: int = 10, exclude_seen: bool = False) -> dict:
        m = self.model(task)
        if m.kind == "classify":
            raise LifelongrecError(f"task '{task}' is a profile task: use classify")
        ids, unknown = self._ids(history)
        u = m.encode(ids)[0, -1]
        scores = m.head.items @ u + m.head.bias
        scores[0] = -torch.inf
        if exclude_seen:
            scores[ids[0]] = -torch.inf
        top = torch.topk(scores, min(k, len(scores) - 1))
        return {
            "task": task,
            "items": [
                {"item": self.items[i], "score": float(s)} for s, i in zip(top.values.tolist(), top.indices.tolist())
            ],
            "unknown_items": unknown,
        }

    @torch.no_grad()
    def classify(self, task: str, history: list[str]) -> dict:
        m = self.model(task)
        if m.kind != "classify":
            raise LifelongrecError(f"task '{task}' is an item task: use recommend")
        ids, unknown = self._ids(history)
        p = torch.softmax(m.head(m.encode(ids)[:, -1])[0], -1)
        best = int(p.argmax())
        return {
            "task": task,
            "class": m.classes[best],
            "probabilities": {c: float(x) for c, x in zip(m.classes, p.tolist())},
            "unknown_items": unknown,
        }

    def predict(self, task: str, history: list[str], k: int = 10, exclude_seen: bool = False) -> dict:
        if self.model(task).kind == "classify":
            return self.classify(task, history)
        return self.recommend(task, history, k, exclude_seen)
