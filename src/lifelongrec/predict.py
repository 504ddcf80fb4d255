"""Inference on raw histories with external ids: the Python API behind `lifelongrec predict`.

    p = Predictor("runs/ml1m/stream-peterrec")
    p.recommend("T2", ["Toy Story (1995)", "Heat (1995)"], k=10, exclude_seen=True)
    p.classify("T4", [...]); p.embed("T4", [...])

The run's base is loaded once (one backbone in memory, on the device asked for); each task is its
adapter on top, rebuilt by the method that wrote it (found through the registry by the name in
adapter_config.json), checked against the fingerprint of the part of the base it reads. Task networks
are stateless, so one Predictor answers for any number of tasks from any number of threads. Unknown
item ids are reported back, never silently dropped.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .adapters import check_base_fingerprint, read_adapter, read_base, read_run_json, read_targets
from .backbones import build_backbone
from .config import BackboneConfig
from .device import resolve_device
from .errors import LifelongrecError
from .fsutil import read_json
from .heads import ItemHead
from .methods import LoadedBase, method_class
from .methods.base import strip
from .tasknet import TaskNet, head_input

UNIVERSAL = "universal"  # embed's name for a method's universal user representation


Inputs = tuple[torch.Tensor, list[list[str]], torch.Tensor]  # ids, unknown ids, user vectors


class Predictor:
    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        self.run = Path(run_dir)
        if not self.run.is_dir():
            raise LifelongrecError(f"{self.run}: not a folder (expected a stream run folder)")
        self.meta = read_run_json(self.run)
        self.device = resolve_device(device)
        items_file = self.run / "items.parquet"
        if not items_file.is_file():
            raise LifelongrecError(f"{self.run}: items.parquet is missing (the run's item vocabulary)")
        try:
            ext = pq.read_table(items_file).column("item").to_pylist()
        except (pa.ArrowException, KeyError, OSError) as e:
            raise LifelongrecError(f"{items_file}: not the run's item vocabulary (damaged: {e})") from None
        self.items = np.array(["", *ext], dtype=object)
        self.index = {x: i + 1 for i, x in enumerate(ext)}
        self._lock = threading.Lock()  # guards loading only; inference runs unlocked
        self._base: LoadedBase | None = None
        self._models: dict[str, TaskNet] = {}
        self._configs: dict[str, dict] = {}
        self._targets: dict[str, np.ndarray | None] = {}  # a task's own catalogue (own_items), else None
        self._target_index: dict[str, dict[str, int]] = {}  # its ids -> head rows

    @property
    def tasks(self) -> list[str]:
        return [t for t in self.meta["order"] if (self.run / "adapters" / t / "adapter_config.json").is_file()]

    @property
    def base(self) -> LoadedBase:
        if self._base is None:
            with self._lock:
                if self._base is None:
                    # Tensors are read and checked on the CPU; the modules built from them move to the device.
                    meta, tensors = read_base(self.run / "base", torch.device("cpu"))
                    if meta.get("vocab_hash") != self.meta["vocab_hash"]:
                        raise LifelongrecError(
                            f"{self.run / 'base' / 'base.json'}: its vocabulary differs from the run's"
                        )
                    backbone = build_backbone(BackboneConfig.model_validate(meta["model"]), meta["n_items"])
                    try:
                        backbone.load_state_dict(strip("backbone", tensors))
                    except RuntimeError as e:
                        raise LifelongrecError(
                            f"{self.run / 'base' / 'base.safetensors'}: does not fit the model in base.json ({e})"
                        ) from None
                    backbone = backbone.to(self.device).eval()
                    for p in backbone.parameters():
                        p.requires_grad_(False)
                    self._base = LoadedBase(backbone, tensors, meta)
        return self._base

    def config(self, task: str) -> dict:
        self.model(task)
        return self._configs[task]

    def model(self, task: str) -> TaskNet:
        m = self._models.get(task)
        if m is not None:
            return m
        if task not in self.tasks:
            raise LifelongrecError(f"unknown task '{task}' for this run (learned: {', '.join(self.tasks) or 'none'})")
        return self._load(task)

    def refresh(self) -> list[str]:
        """Take in the tasks added to the run since it was opened (`lifelongrec task add`): each new
        adapter is read and checked against the loaded base first, and only when all of them load
        does the task list change (old tasks answer throughout). Returns the new tasks."""
        fresh = read_run_json(self.run)
        if fresh["vocab_hash"] != self.meta["vocab_hash"]:
            raise LifelongrecError(f"{self.run}: its item vocabulary changed since it was loaded; load it again")
        added = [
            t
            for t in fresh["order"]
            if t not in self.tasks and (self.run / "adapters" / t / "adapter_config.json").is_file()
        ]
        if not added:
            return []
        base_file = read_json(self.run / "base" / "base.json", "the run's base metadata")
        if self._base is not None and base_file.get("sha256") != self._base.meta.get("sha256"):
            # The method stores what a new task learns in the base too (Conure's free weights): load the
            # new base with every adapter on it, each checked against it (the earlier tasks read the
            # same values there, or their check fails), then swap all at once. Requests under way
            # finish on the networks they hold.
            staged = Predictor(self.run, str(self.device))
            staged.meta = fresh
            for t in staged.tasks:
                staged.model(t)
            with self._lock:
                self._base, self._models, self._configs = staged._base, staged._models, staged._configs
                self._targets, self._target_index = staged._targets, staged._target_index
        else:
            for t in added:
                self._load(t)
        self.meta = fresh
        return added

    def _load(self, task: str) -> TaskNet:
        base = self.base
        with self._lock:
            if task in self._models:
                return self._models[task]
            folder = self.run / "adapters" / task
            config, tensors = read_adapter(folder, torch.device("cpu"))
            if config.get("vocab_hash") != self.meta["vocab_hash"]:
                raise LifelongrecError(f"{folder / 'adapter_config.json'}: its vocabulary differs from the run's")
            try:
                cls = method_class(str(config.get("method")))
            except LifelongrecError:
                raise LifelongrecError(
                    f"{folder / 'adapter_config.json'}: written by method '{config.get('method')}', which this "
                    "lifelongrec does not know"
                ) from None
            check_base_fingerprint(folder, config, cls.base_reads(base.tensors, config))
            try:
                net = cls.load_adapter(base, config, tensors, self.device)
            except (RuntimeError, KeyError) as e:
                raise LifelongrecError(
                    f"{folder / 'adapter.safetensors'}: does not fit {config['method']} ({e})"
                ) from None
            except LifelongrecError as e:  # the method's own check (a prompt's shape): name the file
                raise LifelongrecError(f"{folder / 'adapter.safetensors'}: {e}") from None
            targets = read_targets(folder, config)
            self._targets[task] = targets
            if targets is not None:
                self._target_index[task] = {str(x): i for i, x in enumerate(targets) if i}
            self._configs[task] = config
            self._models[task] = net
            return net

    def known(self, history: list[str]) -> tuple[list[int], list[str]]:
        """A history's item indices (the ids the run knows, in order) and its unknown ids; an empty or
        wholly unknown history is an error."""
        if not history:
            raise LifelongrecError("empty history: give at least one item id")
        known = [self.index[h] for h in history if h in self.index]
        unknown = [h for h in history if h not in self.index]
        if not known:
            raise LifelongrecError(f"none of the {len(history)} item ids is in this run's vocabulary: {unknown[:5]}")
        return known, unknown

    def _ids(self, task: str, histories: list[list[str]]) -> tuple[torch.Tensor, list[list[str]]]:
        """The task's input for many histories, left-padded into one batch: each history's latest items
        the task reads (its adapter's max_length); and each history's unknown ids. Padding does not
        change a user vector (both backbones hold padded positions at zero)."""
        width = int(self.config(task)["max_length"])
        rows, unknown = [], []
        for n, h in enumerate(histories):
            try:
                known, unk = self.known(h)
            except LifelongrecError as e:
                raise LifelongrecError(f"history {n}: {e}" if len(histories) > 1 else str(e)) from None
            rows.append(known[-width:])
            unknown.append(unk)
        ids = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, ids.shape[1] - len(r) :] = torch.tensor(r)
        return ids.to(self.device), unknown

    def _vectors(self, task: str, m: TaskNet, ids: torch.Tensor) -> torch.Tensor:
        """The user vectors the task's head was trained on (its `pooling`: last position or mean)."""
        return head_input(m.encoder, {"items": ids}, self.config(task).get("pooling", "last"))

    def _kind(self, task: str) -> str:
        return self.config(task)["kind"]

    def pass_key(self, task: str) -> tuple | None:
        """Tasks with the same key get the same user vector for a history: their network reads the
        loaded base's backbone with no view of its own (no mask, prompt or patch: FineSmax's tasks,
        a method's T1) through the same input length and pooling, so one forward pass serves them
        all. None: the task's pass is its own."""
        if task == UNIVERSAL and task not in self.tasks:
            return None
        m = self.model(task)
        if m.encoder.backbone is not self.base.backbone or m.encoder.view() is not None:
            return None
        cfg = self.config(task)
        return (int(cfg["max_length"]), cfg.get("pooling", "last"))

    @torch.inference_mode()
    def inputs(self, task: str, histories: list[list[str]]) -> Inputs:
        """One forward pass for many histories: their ids, unknown ids and the task's user vectors
        (shared by every task of the same pass_key)."""
        m = self.model(task)
        ids, unknown = self._ids(task, histories)
        return ids, unknown, self._vectors(task, m, ids)

    def embed(self, task: str, history: list[str]) -> dict:
        return self.embed_many(task, [history])[0]

    @torch.inference_mode()
    def embed_many(self, task: str, histories: list[list[str]], given: Inputs | None = None) -> list[dict]:
        """`given`: the histories' inputs already computed (inputs(), a task of the same pass_key)."""
        if task == UNIVERSAL and task not in self.tasks:
            return [self._universal(h) for h in histories]
        _, unknown, vectors = given or self.inputs(task, histories)
        return [{"task": task, "vector": v, "unknown_items": unk} for v, unk in zip(vectors.tolist(), unknown)]

    def _universal(self, history: list[str]) -> dict:
        """The method's universal user representation: its tasks' user vectors, each from the latest
        items that task reads, concatenated or averaged (methods.base.Method.universal)."""
        if not self.tasks:
            raise LifelongrecError(f"{self.run}: no task learned yet, so no universal representation")
        configs = [self.config(t) for t in self.tasks]
        method = str(configs[0]["method"])
        spec = method_class(method).universal(configs)
        if spec is None:
            raise LifelongrecError(
                f"method '{method}' has no universal user representation; embed one task (learned: "
                f"{', '.join(self.tasks)})"
            )
        tasks, how = spec
        vectors: list[torch.Tensor] = []
        unknown: list[str] = []
        for t in tasks:
            ids, (unknown,) = self._ids(t, [history])
            vectors.append(self._vectors(t, self.model(t), ids)[0])
        v = torch.cat(vectors) if how == "concat" else torch.stack(vectors).mean(0)
        return {"task": UNIVERSAL, "tasks": tasks, "combine": how, "vector": v.tolist(), "unknown_items": unknown}

    def recommend(
        self,
        task: str,
        history: list[str],
        k: int = 10,
        exclude_seen: bool = False,
        candidates: list[str] | None = None,
    ) -> dict:
        """The top k items for a history; `candidates`: rank only these ids (the ones the task cannot
        rank are listed in `unknown_candidates`)."""
        return self.recommend_many(task, [history], k, exclude_seen, candidates)[0]

    @torch.inference_mode()
    def recommend_many(
        self,
        task: str,
        histories: list[list[str]],
        k: int = 10,
        exclude_seen: bool = False,
        candidates: list[str] | None = None,
        given: Inputs | None = None,
    ) -> list[dict]:
        """recommend for many histories in one forward pass (the same `candidates` for all); `given`:
        their inputs already computed (inputs(), a task of the same pass_key)."""
        m = self.model(task)
        if self._kind(task) not in ("next_item", "item_rec"):
            raise LifelongrecError(f"task '{task}' is a profile task: use classify")
        ids, unknown, vectors = given or self.inputs(task, histories)
        head = cast(ItemHead, m.head)
        scores = vectors @ head.items.T + head.bias
        scores[:, 0] = -torch.inf
        names = self._targets[task]
        own = names is not None
        rows = self._target_index[task] if own else self.index
        if exclude_seen and not own:
            scores.scatter_(1, ids, -torch.inf)  # padding (0) is excluded already
        elif exclude_seen:  # the task's own catalogue: the history's items by their external ids
            for i, h in enumerate(histories):
                scores[i, torch.tensor([rows[x] for x in set(h) if x in rows], dtype=torch.long)] = -torch.inf
        extra: dict = {}
        if candidates is not None:
            keep = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
            keep[torch.tensor([rows[c] for c in candidates if c in rows], dtype=torch.long)] = True
            scores[:, ~keep] = -torch.inf
            extra["unknown_candidates"] = [c for c in candidates if c not in rows]
        labels = self.items if names is None else names
        # Only candidates: padding and excluded items (score -inf) are never returned, even for a large k.
        finite = torch.isfinite(scores).sum(1).tolist()
        top = torch.topk(scores, min(k, max(finite)))
        out = []
        for i, (vals, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            n = min(k, finite[i])
            items = [{"item": labels[j], "score": float(v)} for v, j in zip(vals[:n], idx[:n])]
            out.append({"task": task, **extra, "items": items, "unknown_items": unknown[i]})
        return out

    def classify(self, task: str, history: list[str]) -> dict:
        return self.classify_many(task, [history])[0]

    @torch.inference_mode()
    def classify_many(self, task: str, histories: list[list[str]], given: Inputs | None = None) -> list[dict]:
        """`given`: the histories' inputs already computed (inputs(), a task of the same pass_key)."""
        m = self.model(task)
        kind, classes = self._kind(task), self.config(task)["classes"]
        if kind not in ("classify", "binary"):
            raise LifelongrecError(f"task '{task}' is an item task: use recommend")
        _, unknown, vectors = given or self.inputs(task, histories)
        logits = m.head(vectors)
        if kind == "binary":
            p1 = torch.sigmoid(logits.reshape(-1))
            probs = torch.stack([1.0 - p1, p1], 1)
        else:
            probs = torch.softmax(logits, -1)
        out = []
        for row, unk in zip(probs.tolist(), unknown):
            best = int(np.argmax(row))
            out.append(
                {
                    "task": task,
                    "class": classes[best],
                    "probabilities": {c: float(x) for c, x in zip(classes, row)},
                    "unknown_items": unk,
                }
            )
        return out

    def predict(self, task: str, history: list[str], k: int = 10, exclude_seen: bool = False) -> dict:
        self.model(task)
        if self._kind(task) in ("classify", "binary"):
            return self.classify(task, history)
        return self.recommend(task, history, k, exclude_seen)
