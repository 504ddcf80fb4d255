"""Zero forgetting, checked exactly: for every run given, compare every later evaluation of a task with
its evaluation right after it was learned, using all metrics of the run's own metrics.jsonl (full
float precision, not the rounded matrix.csv). Prints one line per run.

Usage: python bench/check_forgetting.py runs/ml1m64/stream-*
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def check(run: Path) -> str:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    method = json.loads((run / "run.json").read_text())["method"]
    cells = changed = 0
    worst = 0.0
    for i, row in enumerate(rows):
        for j in range(i):
            task = rows[j]["task"]
            then, now = rows[j]["test_after"][task], row["test_after"][task]
            for k, v in then.items():
                if isinstance(v, (int, float)):
                    cells += 1
                    if now[k] != v:
                        changed += 1
                        worst = max(worst, abs(now[k] - v))
    verdict = "identical" if changed == 0 else f"{changed} differ, largest change {worst:.6f}"
    return f"| {method} | {len(rows)} | {cells} | {verdict} |"


def main() -> None:
    print("| method | tasks learned | later evaluations compared (all metrics) | result |")
    print("|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(check(Path(arg)))


if __name__ == "__main__":
    main()
