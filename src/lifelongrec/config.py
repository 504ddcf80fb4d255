"""Typed configuration: YAML in, validated pydantic models out, resolved JSON saved with every output.

A stream config says where the interactions come from (`source`), how the input sequence of every
user is built (`sequence`), the ordered list of tasks, and how each task's examples are split.
Any field can be overridden from the command line with `--set a.b=c` (values parsed as YAML).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .config_data import (  # noqa: F401  (re-exported: the data side of a config lives there)
    ENCODINGS,
    FORMATS,
    Columns,
    Filter,
    LabelConfig,
    LabelFile,
    ProfileSource,
    SourceConfig,
    SplitConfig,
    Strict,
    _omit_defaults,
    normalize_encoding,
)
from .config_train import (  # noqa: F401  (re-exported: the model and training knobs live there)
    BackboneConfig,
    SequenceConfig,
    TrainConfig,
    check_train_fields,
)
from .errors import ConfigError


class TaskConfig(Strict):
    # A task's name names its folders (adapters/<name>/), so it is a plain word: letters, digits, _ and -.
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    kind: Literal["next_item", "item_rec", "classify", "binary"]
    # item_rec: which events are the targets; a list of filters keeps the events that pass all of them.
    filter: Filter | list[Filter] | None = None
    label: LabelConfig | None = None  # classify / binary: which profile field is the class
    split: SplitConfig | None = None  # overrides the stream-wide split
    # item_rec: draw this fraction of the task's target items at random (seeded by the split) and drop
    # every training example whose target is one of them; validation and test keep theirs. The task
    # must then rank items it never saw as targets (cold start, PCL's Fig. 3 uses 0.5).
    cold_items: float | None = Field(default=None, gt=0.0, lt=1.0)
    # item_rec: the targets are a catalogue of their own (Tenrec's lifelong tasks: articles after videos),
    # numbered 1..n among the task's target events and kept out of the input vocabulary when they occur
    # only there. Heads then score the task's own items; a head tied to the input embedding cannot.
    own_items: bool = False
    # item_rec: keep only each user's latest k target events (Tenrec's T2 keeps the last 3 clicks).
    last_per_user: int | None = Field(default=None, ge=1)
    # item_rec: keep only each user's earliest k target events (with a `position` cut: the next k).
    first_per_user: int | None = Field(default=None, ge=1)
    # The targets from a file of the user's own instead of the stream's events or profiles.
    labels: LabelFile | None = None
    # Overrides of the training knobs for this task alone, on top of `train` (and `finetune` after the
    # first task): e.g. profile tasks reading a longer history with a pooled user vector.
    train: dict[str, Any] | None = None

    @field_validator("train")
    @classmethod
    def _train_fields(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        check_train_fields(v or {}, "train")
        TrainConfig.model_validate(v or {})  # each value's own bounds, named by field, at load time
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return _omit_defaults(
            handler(self),
            {
                "train": None,
                "cold_items": None,
                "own_items": False,
                "last_per_user": None,
                "first_per_user": None,
                "labels": None,
            },
        )

    @field_validator("label", mode="before")
    @classmethod
    def _label_shorthand(cls, v: Any) -> Any:
        return {"field": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskConfig:
        if self.kind == "item_rec" and (self.filter is None) == (self.labels is None):
            raise ValueError(
                f"task {self.name}: item_rec needs either a filter (which events are the targets) or a labels file"
            )
        if self.labels is not None and self.kind == "next_item":
            raise ValueError(f"task {self.name}: a labels file is for item_rec, classify and binary tasks")
        if self.labels is not None and self.kind in ("classify", "binary"):
            if self.label is None:
                self.label = LabelConfig(field=self.labels.label)
            elif self.label.field != self.labels.label:
                raise ValueError(
                    f"task {self.name}: label.field '{self.label.field}' is not the labels file's column "
                    f"'{self.labels.label}'"
                )
        for field in ("cold_items", "last_per_user", "first_per_user"):
            if getattr(self, field) is not None and self.kind != "item_rec":
                raise ValueError(f"task {self.name}: {field} is for item_rec tasks, not {self.kind}")
        if self.own_items and self.kind != "item_rec":
            raise ValueError(f"task {self.name}: own_items is for item_rec tasks, not {self.kind}")
        if self.kind in ("classify", "binary") and self.label is None:
            raise ValueError(f"task {self.name}: {self.kind} needs a label field")
        if self.label is not None and self.kind == "binary":
            lab = self.label
            declared = [str(c) for c in lab.classes] if lab.classes is not None and lab.bins is None else None
            if declared is not None and len(declared) != 2:
                raise ValueError(f"task {self.name}: a binary task needs exactly two label.classes, got {lab.classes}")
            if declared is not None and lab.positive is not None and str(lab.positive) not in declared:
                raise ValueError(
                    f"task {self.name}: label.positive {lab.positive!r} is not one of label.classes {lab.classes}"
                )
        elif self.label is not None and self.label.positive is not None:
            raise ValueError(f"task {self.name}: label.positive is for binary tasks, not {self.kind}")
        return self


class MethodSettings(Strict):
    """A continual method's name and settings. Each method declares its own subclass next to its code
    (methods/<name>.py); the `method` section of a stream config is validated against the class of the
    method it names (a union discriminated by `name`, resolved through the method registry)."""

    name: str


def _method_settings(value: Any) -> MethodSettings | None:
    if value is None or isinstance(value, MethodSettings):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"method: expected a mapping with a `name` (got {value!r})")
    if "name" not in value:
        raise ValueError("method: `name` is missing (which method these settings are for)")
    from .methods.registry import settings_class  # lazy: the registry imports the method modules

    return settings_class(str(value["name"])).model_validate(value)


class StreamConfig(Strict):
    name: str
    source: SourceConfig
    sequence: SequenceConfig = SequenceConfig()
    split: SplitConfig = SplitConfig()
    tasks: list[TaskConfig]
    model: BackboneConfig = BackboneConfig()
    train: TrainConfig = TrainConfig()
    # Overrides of `train` for every task after the first (Conure: lr 1e-4, batch 512 after T1).
    finetune: dict[str, Any] = Field(default_factory=dict)
    # The continual method and its settings ({name: conure, prune: [...]}); `--method` fills the name.
    method: SerializeAsAny[MethodSettings] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        return _method_settings(v)

    @model_validator(mode="after")
    def _tasks(self) -> StreamConfig:
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"task names must be unique, repeated: {sorted(dup)}")
        if not self.tasks:
            raise ValueError("a stream needs at least one task")
        check_train_fields(self.finetune, "finetune")
        if self.model.name == "sasrec" and self.model.max_length < self.sequence.max_length:
            raise ValueError(
                f"model.max_length ({self.model.max_length}) must be >= "
                f"sequence.max_length ({self.sequence.max_length})"
            )
        for t in self.tasks if self.model.name == "sasrec" else []:
            for index in (0, 1):  # the task learned first, or after the first (with finetune)
                merged = {"input_length": self.train.input_length}
                for _, part in self._train_parts(index, t.name):
                    merged.update(part)
                n = merged["input_length"] or 0
                if n > self.model.max_length:
                    raise ValueError(
                        f"task {t.name}: input_length {n} is more than SASRec's model.max_length "
                        f"({self.model.max_length}) positions"
                    )
        for k, t in enumerate(self.tasks):
            if t.own_items and k == 0:
                raise ValueError(f"task {t.name}: the first task sets the input catalogue; own_items is for later ones")
            if t.own_items and any(self.train_for(i, t.name).exclude_seen for i in (0, 1)):
                raise ValueError(
                    f"task {t.name}: with own_items the input items are not its candidates, so exclude_seen "
                    "cannot apply; set it false for this task"
                )
        return self

    def for_method(self, name: str) -> StreamConfig:
        """This config with its `method` section naming `name` (its settings kept when it already names
        it; defaults when it names none or another method without settings of its own)."""
        m = self.method
        if m is not None and m.name == name:
            return self
        if m is not None and m != type(m)(name=m.name):
            changed = sorted(
                k for k in type(m).model_fields if k != "name" and getattr(m, k) != getattr(type(m)(name=m.name), k)
            )
            raise ConfigError(
                f"method {name}: the config's method section holds settings of {m.name} ({', '.join(changed)}); "
                "drop them or ask for that method"
            )
        from .methods.registry import settings_class

        return self.model_copy(update={"method": settings_class(name)(name=name)})

    def _train_parts(self, index: int, task: str | None) -> list[tuple[str, dict[str, Any]]]:
        """The overrides of `train` for `task` at position `index`, in order, with where each comes from:
        `finetune` after the first task, then the task's own `train`."""
        own = next((t.train for t in self.tasks if t.name == task), None) or {}
        parts = [("finetune", self.finetune if index > 0 else {}), (f"tasks.{task}.train", own)]
        return [(where, part) for where, part in parts if part]

    def train_for(self, index: int, task: str | None = None) -> TrainConfig:
        """Training knobs of `task` at position `index` of the learning order: `train`, then `finetune`
        after the first task, then the task's own `train` overrides (an invalid value is named by the
        section that brought it)."""
        out, merged = self.train, self.train.model_dump()
        for where, part in self._train_parts(index, task):
            merged.update(part)
            try:
                out = TrainConfig.model_validate(merged)
            except ValidationError as e:
                raise ConfigError(_format_validation(e, where)) from None
        return out

    def input_length(self, train: TrainConfig) -> int:
        """How many of the latest input items a task trained with `train` reads."""
        return train.input_length or self.sequence.max_length

    def split_for(self, task: TaskConfig) -> SplitConfig:
        s = task.split or self.split
        mode = s.mode or ("by_user" if task.kind == "next_item" else "random")
        return s.model_copy(update={"mode": mode})


# ---------------------------------------------------------------- loading and overrides


def builtin_config_names() -> list[str]:
    root = resources.files("lifelongrec") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path_or_name: str | Path) -> tuple[dict[str, Any], Path | None]:
    p = Path(path_or_name)
    if p.is_file():
        text, where = p.read_text(encoding="utf-8"), p
    else:
        name = str(path_or_name).removesuffix(".yaml")
        res = resources.files("lifelongrec") / "configs" / f"{name}.yaml"
        if "/" in name or not res.is_file():
            raise ConfigError(
                f"config '{path_or_name}' is neither a file nor a built-in config "
                f"(built-in: {', '.join(builtin_config_names())})"
            )
        text, where = res.read_text(encoding="utf-8"), None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path_or_name}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path_or_name}: expected a mapping at the top level")
    return data, where


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides; `c` is parsed as YAML so numbers and lists keep their type.

    A numeric path part indexes a list: `tasks.0.name=X`, or as written in YAML paths, `tasks[0].name=X`.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node: Any = data
        parts = re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".")  # tasks[0].x -> tasks.0.x
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {key}: '{'.'.join(parts[:i])}' is a value, not a section")
    return data


def _format_validation(e: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid config"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        lines.append(f"  {loc or '(top)'}: {err['msg']}" + (f" (got {err['input']!r})" if loc else ""))
    return "\n".join(lines)


def with_method(data: dict[str, Any], method: str | None) -> dict[str, Any]:
    """Name the method of a config's data: `--method M` fills `method.name`; a section that holds
    settings of another method is an error rather than silently dropped."""
    if method is None:
        return data
    section = data.get("method")
    if section is None:
        data["method"] = {"name": method}
    elif not isinstance(section, dict):
        raise ConfigError(f"method: expected a mapping of settings, got {section!r}")
    elif section.get("name") in (None, method):
        section["name"] = method
    elif set(section) - {"name"}:
        raise ConfigError(
            f"--method {method}: the config's method section holds settings of {section['name']} "
            f"({', '.join(sorted(set(section) - {'name'}))}); drop --method or that section"
        )
    else:
        data["method"] = {"name": method}
    return data


def load_config(
    path_or_name: str | Path, overrides: list[str] | None = None, method: str | None = None
) -> StreamConfig:
    data, where = _read_yaml(path_or_name)
    if data.get("setting") == "tabular":
        raise ConfigError(
            f"{path_or_name}: a tabular multi-task config, not a stream: run it with "
            f"`lifelongrec tabular run --config {path_or_name}`"
        )
    data = with_method(apply_overrides(data, overrides or []), method)
    # Relative data paths are relative to the config file, so a config travels with its data.
    src = data.get("source")
    if where is not None and isinstance(src, dict):
        tasks = [t.get("labels") for t in data.get("tasks") or [] if isinstance(t, dict)]
        for holder in (src, src.get("profiles"), *tasks):
            if isinstance(holder, dict) and isinstance(holder.get("path"), str):
                p = Path(holder["path"]).expanduser()
                if not p.is_absolute():
                    holder["path"] = str((where.parent / p).resolve())
    try:
        return StreamConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, str(path_or_name))) from None
