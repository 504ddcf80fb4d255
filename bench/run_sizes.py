"""What a run stores against what it reports: the base once plus each task's adapter, in bytes.

For each run folder: the base file, every adapter file, their sum, and the sum of the bytes the run
reports as added (summary.json `added_bytes`: the first task's includes the base); the difference is
the safetensors JSON headers (and, beside them, the small adapter_config.json / base.json files).
Training checkpoints (tasks/<T>/) and the resume state (state/) are listed apart: they serve nothing.

Usage: python bench/run_sizes.py RUN_DIR...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def header(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def main() -> None:
    for arg in sys.argv[1:]:
        run = Path(arg)
        s = json.loads((run / "summary.json").read_text())
        print(f"## {run} ({s['method']}, {len(s['tasks'])} tasks)\n")
        print("| part | file bytes | tensor bytes (reported) | safetensors header |")
        print("|---|---|---|---|")
        base = run / "base" / "base.safetensors"
        files, reported, headers = base.stat().st_size, s["base_bytes"], header(base)
        print(f"| base | {files:,} | {s['base_bytes']:,} | {header(base):,} |")
        for t in s["tasks"]:
            f = run / "adapters" / t / "adapter.safetensors"
            files += f.stat().st_size
            reported += s["adapter_bytes"][t]
            headers += header(f)
            print(f"| adapter {t} | {f.stat().st_size:,} | {s['adapter_bytes'][t]:,} | {header(f):,} |")
        print(f"| **total** | **{files:,}** | **{reported:,}** | {headers:,} |")
        json_bytes = sum(
            p.stat().st_size for p in [run / "base" / "base.json", *run.glob("adapters/*/adapter_config.json")]
        )
        print(
            f"\nsum of reported added bytes (summary.json added_bytes): {sum(s['added_bytes']):,}; "
            f"files - reported = {files - reported:,} = the headers ({headers:,}); "
            f"JSON descriptions beside them: {json_bytes:,} bytes; "
            f"training checkpoints tasks/: {du(run / 'tasks'):,} bytes; "
            f"resume state state/: {du(run / 'state'):,} bytes\n"
        )


if __name__ == "__main__":
    main()
