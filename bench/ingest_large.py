"""Peak memory and time to ingest a large synthetic CSV into the store (out of core).

Writes `rows` interactions (user_id,item_id,timestamp,rating; many timestamp ties) with DuckDB, then
ingests the file in a fresh process with the default 1 GB DuckDB memory limit, for several sizes, so
that memory can be seen to stay flat while the file grows.
Usage: python bench/ingest_large.py --rows 10000000 50000000 [--workdir bench/_work]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import duckdb
from _measure import measure

CODE = """
from pathlib import Path
from lifelongrec.config import Columns, SourceConfig
from lifelongrec.data.readers import interaction_scan
from lifelongrec.data.ingest import ingest
src = SourceConfig(path={path!r}, format='csv', columns=Columns(rating='rating'))
scan, profile, _ = interaction_scan(src)
ingest(scan, profile, Path({out!r}))
"""


def write_csv(path: Path, rows: int, users: int, items: int) -> None:
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order=false")
    # Users in blocks, timestamps coarse (many ties), items spread by a hash: a plausible log shape.
    con.execute(
        f"COPY (SELECT 'u' || (hash(i) % {users}) AS user_id, (hash(i * 7 + 3) % {items}) + 1 AS item_id, "
        f"1000000000 + (i // 50) AS timestamp, (hash(i * 13) % 5) + 1 AS rating FROM range({rows}) t(i)) "
        f"TO '{tmp}' (HEADER, DELIMITER ',')"
    )
    tmp.rename(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 50_000_000])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).parent / "_work")
    ap.add_argument("--keep", action="store_true", help="keep the CSV files")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for n in args.rows:
        csv = args.workdir / f"synthetic_{n}.csv"
        write_csv(csv, n, args.users, args.items)
        out = args.workdir / f"store_{n}"
        r = measure(CODE.format(path=str(csv), out=str(out)))
        meta = json.loads((out / "store.json").read_text())
        print(
            json.dumps(
                {
                    "rows": n,
                    "csv_gib": round(csv.stat().st_size / 2**30, 2),
                    "seconds": round(r["seconds"], 1),
                    "peak_rss_mib": round(r["peak_rss_mib"], 1),
                    "events": meta["events"],
                    "users": meta["users"],
                    "items": meta["items"],
                    "timestamp_ties": meta["timestamp_ties"],
                }
            ),
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            csv.unlink()


if __name__ == "__main__":
    main()
