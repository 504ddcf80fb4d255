"""Reference rows of a stream (lifelongrec.references) as a markdown table, with the wall time.

Usage: python bench/references.py ml1m ml100k [--set train.input_length=200 ...]
(config names or paths; the prepared stream is cached; --set overrides every named config)
"""

from __future__ import annotations

import argparse
import json
import time

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.references import reference_rows


def cell(m: dict, name: str) -> str:
    ci = m.get("ci95", {}).get(name)
    return f"{m[name]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override a config field: a.b=c")
    args = ap.parse_args()
    for name in args.configs:
        cfg = load_config(name, args.sets)
        t0 = time.perf_counter()
        stream, _ = open_stream(cfg)
        t1 = time.perf_counter()
        rows = reference_rows(stream, cfg)
        t2 = time.perf_counter()
        print(f"\n### {cfg.name}: stream opened in {t1 - t0:.1f} s, references in {t2 - t1:.1f} s\n")
        print("| reference | task | examples | protocol | MRR@5 | HR@10 | accuracy | AUC | C or lambda |")
        print("|---|---|---|---|---|---|---|---|---|")
        for ref, tasks in rows.items():
            for task, m in tasks.items():
                cols = [cell(m, k) if k in m else "" for k in ("MRR@5", "HR@10", "accuracy", "AUC")]
                extra = str(m.get("C", m.get("lambda", m.get("class", ""))))
                print(f"| {ref} | {task} | {m['examples']:,} | {m['protocol']} | {' | '.join(cols)} | {extra} |")
        print("\n" + json.dumps(rows, sort_keys=True))


if __name__ == "__main__":
    main()
