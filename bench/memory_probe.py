"""Peak memory of the two steps that must not grow with the number of events (issue 20), each in
this process alone, printed as JSON (RSS and peak RSS in MiB after each stage):

    # building and saving a stream from an ingested store, blocks of N events
    LIFELONGREC_CACHE=bench/_work/cache python bench/memory_probe.py build \
        --config bench/configs/qk_video_synthetic.yaml --block-events 8388608
    # a prepared stream's T1 objective (training and evaluation windows), as every rank builds it
    python bench/memory_probe.py objective --stream bench/_work/qk_prepared3

Run each command in a fresh process: the peak is the process's own since it started.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path


def mib() -> dict:
    status = Path("/proc/self/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    return {"rss_mib": round(rss), "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def build(config: str, block_events: int) -> list[dict]:
    from lifelongrec.config import load_config
    from lifelongrec.data.blocks import read_blocks
    from lifelongrec.data.build import build_stream, filter_columns
    from lifelongrec.data.sources import cache_root
    from lifelongrec.data.store import ensure_store, load_store
    from lifelongrec.data.stream import save_stream

    cfg = load_config(config)
    store_dir = ensure_store(cfg.source, cache_root())
    values = filter_columns(cfg)
    out = [{"stage": "start", **mib()}]
    header = load_store(store_dir, values=values, timestamps=False, events=False)
    out.append({"stage": "store header (users, items, labels)", "users": header.n_users, **mib()})
    tmp = Path(tempfile.mkdtemp(prefix="memory_probe."))
    try:
        t = time.perf_counter()
        stream = build_stream(cfg, header, read_blocks(store_dir, header, values, block_events), tmp / "seq.npy")
        out.append({"stage": "built", "seconds": round(time.perf_counter() - t, 1), **mib()})
        save_stream(stream, tmp / "stream")
        out.append({"stage": "saved", "events": int(stream.offsets[-1]), "block_events": block_events, **mib()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def objective(stream_dir: Path) -> list[dict]:
    from lifelongrec.data.stream import load_stream
    from lifelongrec.objectives import NextItemObjective
    from lifelongrec.pretrain import build_t1, t1_net

    out = [{"stage": "start", **mib()}]
    stream = load_stream(stream_dir)
    out.append({"stage": "stream opened (sequences memory-mapped)", **mib()})
    net = t1_net(*build_t1(stream.config, stream))
    out.append({"stage": "T1 model", **mib()})
    t = time.perf_counter()
    obj = NextItemObjective(stream, stream.config.tasks[0].name, net, stream.config)
    out.append(
        {"stage": "T1 objective", "windows": len(obj.train_w), "seconds": round(time.perf_counter() - t, 1), **mib()}
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["build", "objective"])
    ap.add_argument("--config")
    ap.add_argument("--block-events", type=int, default=1 << 23)
    ap.add_argument("--stream", type=Path)
    args = ap.parse_args()
    rows = build(args.config, args.block_events) if args.what == "build" else objective(args.stream)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
