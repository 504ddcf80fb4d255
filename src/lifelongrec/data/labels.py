"""Profile labels of a stream's users: class indices from raw label text (bins, a closed class list,
or the distinct values in numeric-then-text order), and the 0/1 targets of binary tasks."""

from __future__ import annotations

import math

import numpy as np

from ..config import LabelConfig
from ..errors import DataError


def _numeric_key(s: str) -> tuple:
    try:
        x = float(s)
    except (TypeError, ValueError):
        return (1, 0.0, str(s))
    # "nan" would make the sort depend on the input order (every comparison with NaN is false): as text.
    return (0, x, s) if math.isfinite(x) else (1, 0.0, str(s))


def class_labels(
    raw: np.ndarray, cfg: LabelConfig, unknown: set[str], file: str | None, users: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Class index per user (-1 = no usable label) and the class names; `file` is named in errors."""
    known = np.array([v is not None and v != "" and v not in unknown for v in raw], dtype=bool)
    vals = raw.copy()
    if cfg.bins is not None:
        edges = np.asarray(sorted(cfg.bins), dtype=float)
        names = [f"<{edges[0]:g}"] + [f"[{a:g},{b:g})" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]:g}"]
        out = np.full(len(raw), -1, dtype=np.int32)
        for i in np.flatnonzero(known):
            try:
                x = float(raw[i])
            except ValueError:
                raise DataError(
                    f"user '{users[i]}': value '{raw[i]}' is not a number",
                    file=file,
                    field=cfg.field,
                    expected="a number to bin",
                ) from None
            if not math.isfinite(x):  # NaN would land in the last bin, silently
                raise DataError(
                    f"user '{users[i]}': value '{raw[i]}' is not a finite number",
                    file=file,
                    field=cfg.field,
                    expected="a finite number to bin (list unknown values in source.unknown_labels)",
                )
            out[i] = int(np.searchsorted(edges, x, side="right"))
        return out, names
    if cfg.classes is not None:
        names = [str(c) for c in cfg.classes]
        allowed = set(names)
        for i in np.flatnonzero(known):
            if vals[i] not in allowed:
                raise DataError(
                    f"user '{users[i]}': unknown label '{vals[i]}'",
                    file=file,
                    field=cfg.field,
                    expected=f"one of {names}",
                )
    else:
        names = sorted({v for v in vals[known]}, key=_numeric_key)
    index = {c: k for k, c in enumerate(names)}
    out = np.array([index[v] if k else -1 for v, k in zip(vals, known)], dtype=np.int32)
    return out, names


def binary_labels(
    raw: np.ndarray, cfg: LabelConfig, unknown: set[str], file: str | None, users: np.ndarray, task: str
) -> tuple[np.ndarray, list[str]]:
    """0/1 per user (-1 = no usable label) and the classes [negative, positive]. The field must hold
    exactly two distinct values (after bins): `positive` names class 1, else the second in class order."""
    cls, names = class_labels(raw, cfg, unknown, file, users)
    seen, counts = np.unique(cls[cls >= 0], return_counts=True)
    found = [names[k] for k in seen]
    pos = None if cfg.positive is None else str(cfg.positive)  # labels are read as text
    if len(found) != 2 or (pos is not None and pos not in found):
        what = ", ".join(f"'{v}' ({c:,} user{'s' * (c != 1)})" for v, c in zip(found, counts.tolist())) or "none"
        if len(found) == 2:
            raise DataError(
                f"task {task}: label.positive '{pos}' is not a value of the field, found {what}",
                file=file,
                field=cfg.field,
            )
        fix = "kind: classify, or label.bins" if cfg.bins is None else "kind: classify, or a single bin edge"
        raise DataError(
            f"task {task}: a binary task needs exactly two distinct values, found {len(found)}: {what}",
            file=file,
            field=cfg.field,
            expected="two values" + (f"; or {fix}" if len(found) > 2 else ""),
        )
    neg = found[0] if pos is None else next(v for v in found if v != pos)
    pos = found[1] if pos is None else pos
    remap = np.full(len(names), -1, dtype=np.int32)
    remap[names.index(neg)], remap[names.index(pos)] = 0, 1
    return np.where(cls >= 0, remap[np.maximum(cls, 0)], -1).astype(np.int32), [neg, pos]
