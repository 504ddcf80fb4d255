"""A synthetic file in Tenrec's QK-video schema, as large as asked (issue 20: data larger than memory).

Columns as Tenrec's QK-video.csv: user_id,item_id,click,follow,like,share,video_category,watching_times,
gender,age. No timestamp: file order is click order, each user's rows together (as Tenrec's files).
Users have 28 rows on average (Tenrec: 142M rows, 5M users), from 5 to 51; items follow a power law
over 3.75M ids (Tenrec's item count); gender and age (0 = unknown) repeat on a user's rows. Written by
DuckDB straight to disk (bounded memory, any size): 3.6M users give about 100M rows.

    python bench/make_qk_video.py --users 3600000 --out bench/_work/qk_video_100m.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb


def write(out: Path, users: int, items: int = 3_750_000) -> None:
    tmp = out.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute("SET memory_limit='1GB'")
    # User u owns rows 51u .. 51u + 50 of the range, of which the first 5 + hash(u) % 47 are kept.
    con.execute(
        f"""COPY (
        SELECT 'u' || (i // 51) AS user_id,
               CAST(floor({items} * pow((hash(i) % 1000003) / 1000003.0, 3)) AS BIGINT) + 1 AS item_id,
               1 AS click,
               CAST(hash(i * 3) % 100 < 2 AS INTEGER) AS follow,
               CAST(hash(i * 5) % 100 < 4 AS INTEGER) AS "like",
               CAST(hash(i * 7) % 1000 < 3 AS INTEGER) AS share,
               hash(i * 11) % 40 AS video_category,
               hash(i * 13) % 5 AS watching_times,
               hash(i // 51) % 3 AS gender,
               hash((i // 51) * 17) % 8 AS age
        FROM range({users * 51}) t(i)
        WHERE i % 51 < 5 + hash(i // 51) % 47
        ) TO '{tmp}' (HEADER, DELIMITER ',')"""
    )
    tmp.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3_600_000)
    ap.add_argument("--out", type=Path, default=Path("bench/_work/qk_video.csv"))
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write(args.out, args.users)
    n = duckdb.sql(f"SELECT count(*) FROM read_csv('{args.out}', header=true)").fetchall()[0][0]
    print(f"{args.out}: {n:,} rows, {args.out.stat().st_size / 2**30:.2f} GiB, "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
