"""Where `stats --estimate`'s shared error comes from: the number of blocks sampled.

    .venv/bin/python bench/estimate_bias.py --dsn "$DSN" [--rows 1000000] [--seeds 20]

A scratch table `pgq_bench_bias_<random>` (public schema, dropped at the end, also when
the run fails) gets --rows rows, packed full (one INSERT ... SELECT generate_series, then
VACUUM ANALYZE). For each seed, the same TABLESAMPLE SYSTEM of about 2,000 pages that
`ops.estimate` takes is scaled up two ways:
- by the sampling percent (what `ops.estimate` does today): rows * 100 / percent;
- by the blocks it actually drew: rows * table pages / distinct blocks in the sample.
It prints the error of each against the true row count: mean and standard deviation over
the seeds, and seed 1's (the seed `ops.estimate` uses). Every group's count is scaled by
the same factor, so this error is shared by every row of the estimate. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics

import psycopg
from psycopg import sql

SAMPLE_PAGES = 2_000  # as ops.estimate.SAMPLE_PAGES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    table = sql.Identifier(f"pgq_bench_bias_{secrets.token_hex(4)}")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL(
                "CREATE TABLE {} (queue text NOT NULL, priority smallint NOT NULL, "
                "payload jsonb NOT NULL)"
            ).format(table))
            conn.execute(sql.SQL(
                "INSERT INTO {} SELECT 'q' || (g %% 3), 1 + (g %% 10), '{{}}'::jsonb "
                "FROM generate_series(1, %s) AS g"
            ).format(table), (args.rows,))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
            _measure(conn, table, args.rows, args.seeds)
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def _measure(conn: psycopg.Connection, table: sql.Identifier, rows: int, seeds: int) -> None:
    row = conn.execute(
        sql.SQL("SELECT pg_relation_size({}::regclass) / 8192").format(
            sql.Literal(table.as_string(conn))
        )
    ).fetchone()
    assert row is not None
    pages = int(row[0])
    percent = min(100.0, 100.0 * SAMPLE_PAGES / pages)
    by_percent, by_blocks = [], []
    for seed in range(1, seeds + 1):
        found = conn.execute(sql.SQL(
            "SELECT count(*), count(DISTINCT (ctid::text::point)[0]) "
            "FROM {} TABLESAMPLE SYSTEM (%s) REPEATABLE (%s)"
        ).format(table), (percent, seed)).fetchone()
        assert found is not None
        sampled, blocks = int(found[0]), int(found[1])
        by_percent.append(sampled * 100.0 / percent / rows - 1)
        by_blocks.append(sampled * pages / blocks / rows - 1)
    print(f"rows={rows} pages={pages} percent={percent:.2f} seeds={seeds}")
    for name, errors in (("scaled by percent", by_percent), ("scaled by blocks", by_blocks)):
        print(f"{name:18}  mean {statistics.mean(errors):+.4f}  "
              f"sd {statistics.stdev(errors):.4f}  seed 1 {errors[0]:+.4f}")


if __name__ == "__main__":
    main()
