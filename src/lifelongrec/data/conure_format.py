"""The Conure / PeterRec / TERACON text format: `0,0,0,1,2,3,4,,2,3,4`.

Left-padded item ids (0 = padding), then `,,`, then one or more targets; every target is one example
(an item for item tasks, a class id for profile tasks). Read line by line, so memory grows with the
examples kept, not with the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class ConureExamples:
    file: Path
    offsets: np.ndarray  # int64 [n_lines + 1], CSR into items
    items: np.ndarray  # int64, the unpadded sequences
    example_line: np.ndarray  # int64, which sequence each example reads
    targets: np.ndarray  # int64, one per example

    @property
    def n_lines(self) -> int:
        return len(self.offsets) - 1


def _ints(text: str, path: Path, lineno: int, what: str) -> list[int]:
    out = []
    for k, cell in enumerate(text.split(","), start=1):
        cell = cell.strip()
        try:
            v = int(cell)
        except ValueError:
            raise DataError(
                f"{what} entry {k} is '{cell}', not an integer id",
                file=path,
                line=lineno,
                expected="comma-separated integer ids, e.g. 0,0,1,2,3,,4",
            ) from None
        if v < 0:
            raise DataError(
                f"{what} entry {k} is negative ({v})",
                file=path,
                line=lineno,
                expected="ids >= 0 (0 is padding)",
            )
        if v >= 2**63:
            raise DataError(
                f"{what} entry {k} is too large ({cell})",
                file=path,
                line=lineno,
                expected="ids below 2^63",
            )
        out.append(v)
    return out


def read_conure(path: str | Path) -> ConureExamples:
    from .textfile import decode_error, require

    path = require(path)
    try:
        return _read_conure(path)
    except UnicodeDecodeError:
        raise decode_error(path, "utf-8") from None
    except OSError as e:
        raise DataError(f"cannot be read ({e.strerror or e})", file=path) from None


def _read_conure(path: Path) -> ConureExamples:
    seqs: list[list[int]] = []
    lines: list[int] = []
    targets: list[int] = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if ",," not in line:
                raise DataError(
                    "no ',,' between the sequence and the target(s)",
                    file=path,
                    line=lineno,
                    expected="seq,,target[,target...], e.g. 0,0,1,2,3,,4",
                )
            left, right = line.split(",,", 1)
            seq = _ints(left, path, lineno, "sequence") if left.strip() else []
            first = next((k for k, v in enumerate(seq) if v != 0), len(seq))
            seq = seq[first:]
            if not seq:
                raise DataError(
                    "user with no history: the sequence is empty or all padding",
                    file=path,
                    line=lineno,
                    expected="at least one item id > 0 before ',,'",
                )
            if 0 in seq:
                raise DataError(
                    "padding (0) after the first item",
                    file=path,
                    line=lineno,
                    expected="left padding only: zeros before the first item",
                )
            tg = _ints(right.rstrip(","), path, lineno, "target")
            seqs.append(seq)
            lines.extend([len(seqs) - 1] * len(tg))
            targets.extend(tg)
    if not seqs:
        raise DataError("no data lines", file=path, expected="lines of the form seq,,target")
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.fromiter((v for s in seqs for v in s), dtype=np.int64, count=int(offsets[-1]))
    return ConureExamples(path, offsets, items, np.asarray(lines, dtype=np.int64), np.asarray(targets, dtype=np.int64))


def conure_stats(ex: ConureExamples) -> dict:
    from .stats import quantiles

    uniq, cnt = np.unique(ex.targets, return_counts=True)
    out = {
        "file": str(ex.file),
        "lines": ex.n_lines,
        "examples": int(len(ex.targets)),
        "input_items": int(len(np.unique(ex.items))),
        "sequence_length": quantiles(np.diff(ex.offsets)),
        "distinct_targets": int(len(uniq)),
    }
    if len(uniq) <= 50:  # a profile task: show the class balance
        out["target_counts"] = {str(u): int(c) for u, c in zip(uniq, cnt)}
    return out


def format_conure_stats(s: dict) -> str:
    lines = [
        f"file {s['file']} (Conure format)",
        f"{s['lines']:,} sequences, {s['examples']:,} examples, {s['input_items']:,} distinct input items, "
        f"{s['distinct_targets']:,} distinct targets",
        "sequence length: " + " ".join(f"{k}={v:g}" for k, v in s["sequence_length"].items()),
    ]
    if "target_counts" in s:
        lines.append("targets: " + " ".join(f"{k}:{v:,}" for k, v in s["target_counts"].items()))
    return "\n".join(lines)
