"""Run one `lifelongrec stream run` in a subprocess for the bench scripts: skip it when its run folder
says complete, resume it when it was interrupted, start it otherwise (from a pretrained T1 artifact, or
as a branch of a run that already learned a prefix of the order). Returns its metrics.jsonl rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def stream_run(
    out: Path,
    config: str,
    method: str,
    order: str,
    init_from: Path | None,
    sets: list[str],
    branch_from: Path | None = None,
) -> list[dict]:
    run_json = out / "run.json"
    if not complete(out):
        cmd = [sys.executable, "-m", "lifelongrec.cli", "stream", "run"]
        if run_json.is_file():
            cmd += ["--resume", str(out)]
        else:
            cmd += ["--config", config, "--method", method, "--order", order]
            cmd += ["--branch-from", str(branch_from)] if branch_from else ["--init-from", str(init_from)]
            cmd += ["--out", str(out), *[x for s in sets for x in ("--set", s)]]
        subprocess.run(cmd, check=True)
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def complete(out: Path) -> bool:
    """Whether the run folder holds a finished run (run.json says so)."""
    run_json = out / "run.json"
    return run_json.is_file() and json.loads(run_json.read_text()).get("status") == "complete"
