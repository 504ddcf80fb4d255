"""Load test of `lifelongrec serve` on loopback (issue 19): a bounded number of requests at a fixed
concurrency, mixed over every task of the run (recommend for item tasks, classify for profile tasks,
and one request in ten an embed), with real histories: the test users' inputs of the run's own stream.

    python bench/load_test.py runs/bench/ml1m_paper/seed-0/pcl --requests 10000 --concurrency 32 64 \
        --max-batch 64 1 --out runs/load/pcl.json

For each --max-batch value a fresh server is started (`lifelongrec serve RUN --max-batch B`), warmed
up with 200 requests, and then loaded at each concurrency. Reported: requests per second, latency
percentiles (client side, from send to the parsed answer), errors (any status but 200, or a failed
connection), the server's resident memory before and after, and its micro-batching counts (/stats).
The client runs on the same machine (httpx, one asyncio loop), so it takes CPU from the server:
the figures are a lower bound of what the server alone does. `--client ab` loads with ApacheBench
instead (C, `apt-get install apache2-utils`): one `ab` process per task, each posting one test user's
history over and over at concurrency/tasks (no embeds), so the client costs far less CPU; its latency
percentiles are the worst over the processes. `--rounds N` repeats each load N times on the same server
(a longer run: is memory flat?), one row per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from lifelongrec.config import StreamConfig
from lifelongrec.data.prepare import open_stream
from lifelongrec.data.stream import TEST


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def histories(run: Path, n: int, seed: int = 0) -> list[list[str]]:
    """The inputs of the run's T1 test users (external ids, the last 200 items at most)."""
    cfg = StreamConfig.model_validate(json.loads((run / "config.json").read_text()))
    stream, _ = open_stream(cfg)
    td = stream.task(cfg.tasks[0].name)
    te = np.flatnonzero(td.split == TEST)
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(te, size=min(n, len(te)), replace=False):
        u, end = td.user[i], td.end[i]
        seq = stream.seq_items[stream.offsets[u] : stream.offsets[u] + end][-200:]
        out.append([str(stream.items[j]) for j in seq])
    return out


def requests_for(tasks: list[dict], hists: list[list[str]], n: int, seed: int = 0) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = tasks[i % len(tasks)]
        h = hists[rng.randrange(len(hists))]
        if i % 10 == 9:
            out.append(("/embed", {"task": t["name"], "history": h}))
        elif t["kind"] in ("next_item", "item_rec"):
            out.append(("/recommend", {"task": t["name"], "history": h, "k": 10, "exclude_seen": True}))
        else:
            out.append(("/classify", {"task": t["name"], "history": h}))
    return out


async def load(base: str, reqs: list[tuple[str, dict]], concurrency: int) -> dict:
    lat = np.zeros(len(reqs))
    errors: dict[str, int] = {}
    nxt = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            nonlocal nxt
            while nxt < len(reqs):
                i = nxt
                nxt += 1
                route, body = reqs[i]
                t0 = time.perf_counter()
                try:
                    r = await client.post(route, json=body)
                    r.json()
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    print(f"request {i} ({route}): {type(e).__name__}: {e}", file=sys.stderr)
                lat[i] = time.perf_counter() - t0

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = lat * 1000
    return {
        "concurrency": concurrency,
        "requests": len(reqs),
        "seconds": round(wall, 2),
        "req_per_s": round(len(reqs) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "errors": errors,
    }


def load_ab(base: str, tasks: list[dict], hists: list[list[str]], n: int, concurrency: int, tmp: Path) -> dict:
    """`ab` processes side by side, one per task; requests, errors and the worst percentiles summed up."""
    procs = []
    per_c, per_n = max(1, concurrency // len(tasks)), max(1, n // len(tasks))
    tmp.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tasks):
        route, body = requests_for([t], [hists[i % len(hists)]], 1)[0]
        (tmp / f"{i}.json").write_text(json.dumps(body))
        cmd = ["ab", "-q", "-k", "-c", str(per_c), "-n", str(per_n), "-p", str(tmp / f"{i}.json")]
        cmd += ["-T", "application/json", "-e", str(tmp / f"{i}.csv"), f"{base}{route}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    t0 = time.perf_counter()
    outs = [pr.communicate()[0] for pr in procs]
    wall = time.perf_counter() - t0
    errors, done = 0, 0
    for out in outs:
        for line in out.splitlines():
            # ab counts an answer whose length differs from the first one's as "failed (Length)": a
            # probability's last digits move with the micro-batch it was computed in, so only failed
            # connections, receives and exceptions, and non-2xx statuses, are errors here.
            if line.strip().startswith("(Connect:"):
                parts = dict(x.strip().split(": ") for x in line.strip(" ()").split(","))
                errors += sum(int(parts[k]) for k in ("Connect", "Receive", "Exceptions"))
            if line.startswith("Non-2xx responses:"):
                errors += int(line.split(":")[1].split()[0])
            if line.startswith("Complete requests:"):
                done += int(line.split(":")[1])
    pct: dict[int, float] = {}
    for i in range(len(tasks)):
        rows = [r.split(",") for r in (tmp / f"{i}.csv").read_text().splitlines()[1:]]
        for q, ms in rows:
            pct[int(float(q))] = max(pct.get(int(float(q)), 0.0), float(ms))
    return {
        "client": "ab",
        "concurrency": per_c * len(tasks),
        "requests": done,
        "seconds": round(wall, 2),
        "req_per_s": round(done / wall, 1),
        "p50_ms": pct.get(50),
        "p95_ms": pct.get(95),
        "p99_ms": pct.get(99),
        "max_ms": pct.get(100),
        "errors": {"failed or non-2xx": errors} if errors else {},
    }


def serve(
    run: Path, port: int, max_batch: int, threads: int, log: Path, wait_ms: float, shared: bool = True
) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "lifelongrec", "serve", str(run), "--port", str(port), "--max-batch", str(max_batch)]
    cmd += ["--max-wait-ms", str(wait_ms), "--shared-pass" if shared else "--no-shared-pass"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not become ready in 5 minutes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--max-batch", type=int, nargs="+", default=[64, 1])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rounds", type=int, default=1, help="repeat each load on the same server")
    ap.add_argument("--client", choices=["httpx", "ab"], default="httpx")
    ap.add_argument("--no-shared-pass", action="store_true", help="tasks never share a forward pass")
    args = ap.parse_args()
    hists = histories(args.run, 1000)
    results = []
    for mb in args.max_batch:
        log = Path(f"/tmp/load_test_server_{args.port}.log")
        proc = serve(args.run, args.port, mb, args.threads, log, args.max_wait_ms, not args.no_shared_pass)
        base = f"http://127.0.0.1:{args.port}"
        try:
            tasks = httpx.get(f"{base}/tasks").json()
            asyncio.run(load(base, requests_for(tasks, hists, 200, seed=99), 8))  # warm-up
            for c, rnd in [(c, r) for c in args.concurrency for r in range(args.rounds)]:
                before = rss_mib(proc.pid)
                httpx.post(f"{base}/stats/reset")
                stats0 = httpx.get(f"{base}/stats").json()
                if args.client == "ab":
                    row = load_ab(base, tasks, hists, args.requests, c, Path(f"/tmp/load_test_ab_{args.port}"))
                else:
                    row = asyncio.run(load(base, requests_for(tasks, hists, args.requests, seed=c + rnd), c))
                stats1 = httpx.get(f"{base}/stats").json()
                row.update(
                    round=rnd + 1,
                    run=str(args.run),
                    max_batch=mb,
                    max_wait_ms=args.max_wait_ms,
                    shared_pass=not args.no_shared_pass,
                    server_rss_mib_before=round(before, 1),
                    server_rss_mib_after=round(rss_mib(proc.pid), 1),
                    forward_passes=stats1["batches"] - stats0["batches"],
                    batched_requests=stats1["requests"] - stats0["requests"],
                    server_ms=stats1.get("server_ms"),
                )
                print(json.dumps(row), flush=True)
                results.append(row)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
