"""Where `stats --estimate`'s shared error came from, and that the stratified sample has none.

    .venv/bin/python bench/estimate_bias.py --dsn "$DSN" [--rows 1000000] [--seeds 20]
                                            [--deleted 0.15]

A scratch schema `pgq_bench_bias_<random>` (migrated with the real migrator, dropped at
the end, also when the run fails) gets --rows ready messages in 3 queues x 10 priorities
(one INSERT ... SELECT generate_series, then VACUUM ANALYZE), then the oldest --deleted
share of them is deleted and not vacuumed (acked between two autovacuum runs: whole pages
of dead tuples). For each seed, the total of all rows is estimated three ways:
- `TABLESAMPLE SYSTEM` of about 2,000 pages, scaled by the sampling percent (what
  `ops.estimate` did before): rows * 100 / percent;
- the same sample scaled by the pages that showed rows: rows * table pages / pages seen;
- `ops.estimate.estimate()` itself (one page from each of 2,000 runs, TID range scans),
  with `SAMPLE_SEED` = the seed: the sum of its ready numbers.
It prints the error of each against the true count: mean and standard deviation over the
seeds, and seed 1's (the seed `ops.estimate` uses). Each method scales every group by
the same pages, so an error of the total is an error shared by every group. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue
from pgq_cli.ops import estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--deleted", type=float, default=0.15)
    args = parser.parse_args()
    schema = f"pgq_bench_bias_{secrets.token_hex(4)}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        try:
            migrate.migrate(conn, schema)
            messages = sql.Identifier(schema, "messages")
            conn.execute(sql.SQL(
                "INSERT INTO {} (queue, priority, payload) "
                "SELECT 'q' || (g %% 3), 1 + (g %% 10), '{{}}'::jsonb "
                "FROM generate_series(1, %s) AS g"
            ).format(messages), (args.rows,))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(messages))
            deleted = int(args.rows * args.deleted)
            conn.execute(sql.SQL("DELETE FROM {} WHERE msg_id <= %s").format(messages),
                         (deleted,))
            conn.execute(sql.SQL("ANALYZE {}").format(messages))
            _measure(conn, schema, args.rows - deleted, args.seeds, args.deleted)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def _measure(conn: psycopg.Connection, schema: str, rows: int, seeds: int,
             deleted: float) -> None:
    row = conn.execute(
        "SELECT pg_relation_size(%s::regclass) / 8192", (f"{schema}.messages",)
    ).fetchone()
    assert row is not None
    pages = int(row[0])
    percent = min(100.0, 100.0 * estimate.SAMPLE_PAGES / pages)
    by_percent, by_blocks, stratified = [], [], []
    q = Queue(conn, schema)
    for seed in range(1, seeds + 1):
        found = conn.execute(sql.SQL(
            "SELECT count(*), count(DISTINCT (ctid::text::point)[0]) "
            "FROM {} TABLESAMPLE SYSTEM (%s) REPEATABLE (%s)"
        ).format(sql.Identifier(schema, "messages")), (percent, seed)).fetchone()
        assert found is not None
        sampled, blocks = int(found[0]), int(found[1])
        by_percent.append(sampled * 100.0 / percent / rows - 1)
        by_blocks.append(sampled * pages / blocks / rows - 1)
        estimate.SAMPLE_SEED = seed
        stats, _ = estimate.estimate(q)
        stratified.append(sum(r.ready for r in stats.rows) / rows - 1)
    print(f"rows={rows} (after deleting {deleted:.0%}, not vacuumed) pages={pages} "
          f"sampled={min(estimate.SAMPLE_PAGES, pages)} seeds={seeds}")
    for name, errors in (("TABLESAMPLE, by percent", by_percent),
                         ("TABLESAMPLE, by pages seen", by_blocks),
                         ("stratified (ops.estimate)", stratified)):
        print(f"{name:27}  mean {statistics.mean(errors):+.4f}  "
              f"sd {statistics.stdev(errors):.4f}  seed 1 {errors[0]:+.4f}")


if __name__ == "__main__":
    main()
