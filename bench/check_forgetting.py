"""Zero forgetting, checked exactly: for every run given, compare every later evaluation of a task with
its evaluation right after it was learned, using the run's own metrics.jsonl (full float precision,
not the rounded matrix.csv). Only metric values are counted and compared: MRR@k, NDCG@k, HR@k,
accuracy and AUC. Example counts ("examples"), the confidence half-widths ("ci95"), the protocol and
any other bookkeeping field are not metrics and are skipped. Prints one line per run.

Usage: python bench/check_forgetting.py runs/ml1m64/stream-*
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

METRIC = re.compile(r"^((MRR|NDCG|HR)@\d+|accuracy|AUC)$")


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
                if METRIC.match(k):
                    cells += 1
                    if now[k] != v and not (math.isnan(v) and math.isnan(now[k])):  # NaN: AUC of one class
                        changed += 1
                        worst = max(worst, abs(now[k] - v))
    verdict = "identical" if changed == 0 else f"{changed} differ, largest change {worst:.6f}"
    return f"| {method} | {len(rows)} | {cells} | {verdict} |"


def main() -> None:
    print("| method | tasks learned | later evaluations compared (metric values) | result |")
    print("|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(check(Path(arg)))


if __name__ == "__main__":
    main()
