"""Human-readable statistics of a prepared stream or of any user file, before a long run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .store import InteractionStore
from .stream import SPLIT_NAMES, Stream

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    q = np.quantile(x, QUANTILES)
    out = {"min": float(x.min())}
    out.update({f"p{int(p * 100)}": float(v) for p, v in zip(QUANTILES, q)})
    out["max"] = float(x.max())
    return out


def _fmt_q(q: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in q.items())


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stream_stats(stream: Stream) -> dict:
    L = stream.config.sequence.max_length
    out: dict[str, Any] = {
        "name": stream.config.name,
        "users": len(stream.users),
        "users_dropped_short": stream.manifest.get("users_dropped_short"),
        "items": stream.n_items,
        "items_dropped_rare": int(stream.manifest.get("items_dropped_rare", 0)),
        "input_events": int(len(stream.seq_items)),
        "max_length": L,
        "input_length": quantiles(stream.lengths()),
        "tasks": {},
    }
    for name, td in stream.tasks.items():
        ends = np.minimum(td.end, L)
        entry = {
            "kind": td.kind,
            "users": int(len(np.unique(td.user))),
            **{s: td.size(i) for i, s in enumerate(SPLIT_NAMES)},
            "input_length_truncated": quantiles(ends),
        }
        if td.classes is not None:
            counts = np.bincount(td.target, minlength=len(td.classes))
            entry["classes"] = dict(zip(td.classes, map(int, counts)))
            entry["majority"] = round(float(counts.max() / max(1, counts.sum())), 4)
            if td.kind == "binary":  # classes are [negative, positive]
                entry["positive"] = td.classes[1]
                entry["positive_rate"] = round(float(counts[1] / max(1, counts.sum())), 4)
        else:
            tgt = td.target[td.target > 0]
            entry["target_items"] = int(len(np.unique(tgt)))
        out["tasks"][name] = entry
    return out


def format_stream_stats(s: dict) -> str:
    lines = [
        f"stream {s['name']}: {s['users']:,} users ({s['users_dropped_short']:,} dropped with too short input), "
        f"{s['items']:,} items"
        + (f" ({s['items_dropped_rare']:,} rare ones dropped)" if s.get("items_dropped_rare") else "")
        + f", {s['input_events']:,} input events, max length {s['max_length']}",
        f"input length per user: {_fmt_q(s['input_length'])}",
        "",
    ]
    rows = []
    for name, t in s["tasks"].items():
        if "positive_rate" in t:
            what = f"positive '{t['positive']}' {t['positive_rate']:.1%}"
        elif "classes" in t:
            what = f"{len(t['classes'])} classes, majority {t['majority']:.1%}"
        else:
            what = f"{t['target_items']:,} target items"
        rows.append(
            [
                name,
                t["kind"],
                t["users"],
                t["train"],
                t["valid"],
                t["test"],
                what,
                f"{t['input_length_truncated']['p50']:g}",
            ]
        )
    lines.append(table(rows, ["task", "kind", "users", "train", "valid", "test", "targets", "median len"]))
    for name, t in s["tasks"].items():
        if "classes" in t:
            lines.append(f"{name} classes: " + ", ".join(f"{k}:{v:,}" for k, v in t["classes"].items()))
    return "\n".join(lines)


def store_stats(store: InteractionStore) -> dict:
    lengths = store.lengths()
    out: dict[str, Any] = {
        "file": store.meta.get("file"),
        "events": store.n_events,
        "users": store.n_users,
        "items": store.n_items,
        "order": store.meta.get("order"),
        "timestamp_ties": store.meta.get("timestamp_ties"),
        "events_per_user": quantiles(lengths),
        "values": {},
        "labels": {},
    }
    uniq: np.ndarray | list[str]  # distinct values and their counts (lists: a label no user has)
    cnt: np.ndarray | list[int]
    for name, v in store.values.items():
        uniq, cnt = np.unique(v[~np.isnan(v)], return_counts=True)
        out["values"][name] = (
            {f"{u:g}": int(c) for u, c in zip(uniq, cnt)} if len(uniq) <= 20 else quantiles(v[~np.isnan(v)])
        )
    for name, lab in store.labels.items():
        present = [x for x in lab if x is not None]
        uniq, cnt = np.unique(np.asarray(present, dtype=str), return_counts=True) if present else ([], [])
        out["labels"][name] = {
            "users_with_label": len(present),
            "distinct": len(uniq),
            **({"counts": {u: int(c) for u, c in zip(uniq, cnt)}} if len(uniq) <= 25 else {}),
        }
    return out


def format_store_stats(s: dict) -> str:
    lines = [
        f"file {s['file']}",
        f"{s['events']:,} events, {s['users']:,} users, {s['items']:,} items; order: {s['order']}; "
        f"timestamp ties broken by file row: {s['timestamp_ties']:,}",
        f"events per user: {_fmt_q(s['events_per_user'])}",
    ]
    for name, v in s["values"].items():
        lines.append(
            f"value {name}: "
            + (
                " ".join(f"{k}:{c:,}" for k, c in v.items())
                if all(isinstance(c, int) for c in v.values())
                else _fmt_q(v)
            )
        )
    for name, lab in s["labels"].items():
        line = f"label {name}: {lab['users_with_label']:,} users, {lab['distinct']} distinct"
        if "counts" in lab:
            line += " (" + " ".join(f"{k}:{c:,}" for k, c in lab["counts"].items()) + ")"
        lines.append(line)
    return "\n".join(lines)
