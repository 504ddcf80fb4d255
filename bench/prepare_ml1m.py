"""Time and peak memory to prepare the ML-1M stream from the cached wheel files.

Cold = ingest the atomic files into the store (DuckDB) + build the six tasks + write them, in a fresh
process with an empty store cache. Warm = the store is cached, only the tasks are built and written.
Usage: python bench/prepare_ml1m.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from _measure import measure

from lifelongrec.data.sources import cache_root, fetch

CODE = """
from lifelongrec.config import load_config
from lifelongrec.data.prepare import prepare
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
prepare(load_config('ml1m'), out=__import__('pathlib').Path({out!r}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    fetch("ml-1m")  # downloads once; the benchmark starts from the verified cached files
    base = cache_root()
    rows = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        # A private cache that shares the fetched dataset but not the ingested store.
        cache = Path(tmp) / "cache"
        (cache / "datasets").mkdir(parents=True)
        os.symlink(base / "datasets" / "ml-1m", cache / "datasets" / "ml-1m")
        env = {**os.environ, "LIFELONGREC_CACHE": str(cache)}
        for _ in range(args.repeats):
            shutil.rmtree(cache / "stores", ignore_errors=True)
            rows["cold"].append(measure(CODE.format(out=f"{tmp}/out"), env))
            rows["warm"].append(measure(CODE.format(out=f"{tmp}/out"), env))
    for kind, rs in rows.items():
        secs = [r["seconds"] for r in rs]
        print(
            json.dumps(
                {
                    "case": kind,
                    "median_seconds": round(statistics.median(secs), 3),
                    "min_seconds": round(min(secs), 3),
                    "max_seconds": round(max(secs), 3),
                    "peak_rss_mib": round(max(r["peak_rss_mib"] for r in rs), 1),
                    "median_process_seconds_incl_imports": round(
                        statistics.median(r["process_seconds"] for r in rs), 3
                    ),
                    "repeats": len(rs),
                }
            )
        )


if __name__ == "__main__":
    main()
