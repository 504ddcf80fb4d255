"""Run a Python snippet in a fresh subprocess; report its wall time and peak resident memory.

Peak RSS comes from the kernel's accounting of the child (ru_maxrss), so it includes DuckDB's native
allocations, which a Python-level tracer would miss.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def measure(code: str, env: dict | None = None) -> dict:
    wrapper = (
        "import time, json, resource\n"
        "t0 = time.perf_counter()\n"
        f"{code}\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, "
        "'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    inner["process_seconds"] = wall
    return inner
