"""A tabular multi-task config (`setting: tabular`, e.g. configs/adult.yaml): the table, which columns
are inputs and how, the yes/no tasks, the split, the models' sizes and the training knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..config import Strict, TrainConfig, _format_validation, _read_yaml, apply_overrides
from ..errors import ConfigError


class TableSource(Strict):
    dataset: Literal["adult"] | None = None
    path: str | None = None
    format: Literal["csv", "parquet"] | None = None

    @model_validator(mode="after")
    def _one(self) -> TableSource:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("set exactly one of source.dataset (adult) or source.path")
        if self.path is not None and self.format is None:
            raise ValueError("source.format is required with source.path (csv, parquet)")
        return self


class NumericColumns(Strict):
    columns: list[str] = Field(default_factory=list)
    # Each numeric column becomes a categorical field of quantile bins computed on the training rows.
    bins: int = Field(default=10, ge=2, le=1000)


class TabularTask(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    column: str
    positive: list[str] = Field(min_length=1)  # values of `column` that make the label 1 (the rest: 0)


class TabularSplit(Strict):
    # random: rows to train/valid/test by `fractions`; train_rows: rows [a, b) train (Adult: the UCI
    # training file), the others split half valid, half test.
    mode: Literal["random", "train_rows"] = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    train_rows: tuple[int, int] | None = None
    seed: int = 42

    @model_validator(mode="after")
    def _rows(self) -> TabularSplit:
        if self.mode == "train_rows" and (self.train_rows is None or self.train_rows[0] >= self.train_rows[1]):
            raise ValueError("split.mode train_rows needs train_rows: [first, end) with first < end")
        if abs(sum(self.fractions) - 1) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {list(self.fractions)}")
        return self


class TabularModel(Strict):
    field_dim: int = Field(default=4, ge=1)  # embedding size of every field
    # hidden sizes of every expert; the last is d, the size of u, s_t and the prompts
    expert: list[int] = Field(default_factory=lambda: [256, 128], min_length=1)
    tower: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    mmoe_experts: int = Field(default=3, ge=1)


class MPTRecSettings(Strict):
    generic_weight: float = Field(default=0.9, ge=0.0)  # lambda_u: the same tower on u alone
    env_weight: float = Field(default=0.1, ge=0.0)  # lambda_e: environment classifier behind the GRL
    recluster_every: int = Field(default=2, ge=1)  # epochs between environment re-assignments
    temperature: float = Field(default=150.0, gt=0.0)  # stage 2 attention over the old prompts
    attention: Literal["instance", "fixed", "task_embedding"] = "instance"
    gate: Literal["learned", "fixed"] = "learned"
    fixed_gate: tuple[float, float] = (0.1, 0.9)
    l2_embedding: float = Field(default=0.006, ge=0.0)
    l2_dnn: float = Field(default=3e-5, ge=0.0)


class TabularConfig(Strict):
    setting: Literal["tabular"]
    name: str
    source: TableSource
    categorical: list[str] = Field(default_factory=list)
    numeric: NumericColumns = Field(default_factory=NumericColumns)
    missing: list[str] = Field(default_factory=list)  # values meaning "missing" (Adult: "?")
    tasks: list[TabularTask] = Field(min_length=2)
    pretrain: list[str]  # the tasks learned jointly in stage 1; the others are new tasks, in order
    split: TabularSplit = Field(default_factory=TabularSplit)
    model: TabularModel = Field(default_factory=TabularModel)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=30, patience=5, batch_size=256))
    mptrec: MPTRecSettings = Field(default_factory=MPTRecSettings)

    @field_validator("categorical")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"categorical columns repeat: {v}")
        return v

    @model_validator(mode="after")
    def _tasks(self) -> TabularConfig:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        unknown = [p for p in self.pretrain if p not in names]
        if unknown or len(self.pretrain) < 2:
            raise ValueError(f"pretrain names >= 2 of the tasks {names} (got {self.pretrain})")
        if len(self.pretrain) == len(names):
            raise ValueError("at least one task must be left for stage 2 (not in pretrain)")
        labels = {t.column for t in self.tasks}
        leak = labels & (set(self.categorical) | set(self.numeric.columns))
        if leak:
            raise ValueError(f"label columns cannot be inputs: {sorted(leak)}")
        if not self.categorical and not self.numeric.columns:
            raise ValueError("no input columns: list categorical and/or numeric.columns")
        return self

    @property
    def new_tasks(self) -> list[str]:
        return [t.name for t in self.tasks if t.name not in self.pretrain]


def load_tabular_config(path_or_name: str | Path, overrides: list[str] | None = None) -> TabularConfig:
    data, where = _read_yaml(path_or_name)
    data = apply_overrides(data, overrides or [])
    src = data.get("source")
    if where is not None and isinstance(src, dict) and isinstance(src.get("path"), str):
        p = Path(src["path"]).expanduser()
        if not p.is_absolute():
            src["path"] = str((where.parent / p).resolve())
    if data.get("setting") != "tabular":
        raise ConfigError(f"{path_or_name}: not a tabular config (it needs `setting: tabular`)")
    try:
        return TabularConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, str(path_or_name))) from None
