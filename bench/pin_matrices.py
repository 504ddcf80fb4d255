"""Record (or check) every method's accuracy matrix on a stream: the regression pin of a refactor.

    python bench/pin_matrices.py record OUT.json --config ml100k --set train.epochs=2 ...
    python bench/pin_matrices.py check  OUT.json

`record` runs each method (default: all seven) into a scratch folder and writes, per method, R[i][j]
(task j's test metric after learning task i, full float precision, read from metrics.jsonl) together
with the config name, overrides and backbone, so `check` reruns exactly the same runs and compares.
`--synthetic DIR` uses the tests' synthetic stream (tests/synthetic.py) instead of a named config.
`--machine` binds the pin to this machine kind (lifelongrec.device.cpu_fingerprint: torch build,
instruction set, processor): where a stream's rounding differs between machines (NextItNet on ML-100K
does), the test checks it exactly on that kind and skips it elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["seqft", "sinmo", "finesmax", "stl", "mtl", "peterrec", "conure"]


def matrix(run: Path) -> list[list[float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    order = [r["task"] for r in rows]
    metric = {r["task"]: r["metric"] for r in rows}
    return [[float(r["test_after"][t][metric[t]]) for t in order[: i + 1]] for i, r in enumerate(rows)]


def run_all(config: str, sets: list[str], methods: list[str], synthetic: str | None, work: Path) -> dict:
    from lifelongrec.config import load_config
    from lifelongrec.runner import run_stream

    if synthetic:
        sys.path.insert(0, str(ROOT / "tests"))
        from synthetic import synthetic_config

        config_path = synthetic_config(work / "data", synthetic)
    else:
        config_path = config
    cfg = load_config(config_path, sets)
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        run_stream(cfg, m, work / m, log=lambda *_: None)
        out[m] = matrix(work / m)
        print(f"{m}: {time.perf_counter() - t0:.1f} s  final row {out[m][-1]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["record", "check"])
    ap.add_argument("file", type=Path)
    ap.add_argument("--config", default="ml100k")
    ap.add_argument("--synthetic", default=None, help="backbone name: use the tests' synthetic stream")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--machine", action="store_true", help="record: bind the pin to this machine kind")
    ap.add_argument("--note", default=None, help="record: why the pin was (re)recorded, kept in the file")
    a = ap.parse_args()
    from lifelongrec.device import cpu_fingerprint

    with tempfile.TemporaryDirectory() as tmp:
        if a.action == "record":
            methods = a.methods.split(",")
            got = run_all(a.config, a.set, methods, a.synthetic, Path(tmp))
            a.file.parent.mkdir(parents=True, exist_ok=True)
            spec = {"config": a.config, "synthetic": a.synthetic, "set": a.set}
            if a.machine:
                spec["machine"] = cpu_fingerprint()
            if a.note:
                spec["note"] = a.note
            a.file.write_text(json.dumps({**spec, "matrices": got}, indent=1) + "\n")
            return
        pin = json.loads(a.file.read_text())
        if pin.get("machine") not in (None, cpu_fingerprint()):
            print(f"note: pinned on '{pin['machine']}', this is '{cpu_fingerprint()}': expect rounding differences")
        got = run_all(pin["config"], pin["set"], list(pin["matrices"]), pin["synthetic"], Path(tmp))
        bad = [m for m in pin["matrices"] if got[m] != pin["matrices"][m]]
        for m in pin["matrices"]:
            diff = max(abs(x - y) for r1, r2 in zip(got[m], pin["matrices"][m]) for x, y in zip(r1, r2))
            print(f"{m}: {'identical' if m not in bad else f'DIFFERS (max |diff| {diff:.3g})'}")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
