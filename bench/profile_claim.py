"""Where a claim+ack drain spends its time: the client under cProfile, the server under
pg_stat_statements.

    .venv/bin/python bench/profile_claim.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

Point it at a private cluster started with `shared_preload_libraries = 'pg_stat_statements'`
(it resets the statistics, so never at a shared server). One consumer drains N messages of
priorities 1..10 with `Queue.claim` + `Queue.ack` in a scratch schema (dropped at the
end). Printed: msg/s, the client functions with the most time of their own, and per
statement the calls, mean execution time, shared buffers hit and WAL written per row.
Without the extension only the client half is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
import uuid

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

QUEUE = "profile"

STATEMENT_STATS = """
SELECT calls,
       rows,
       round((total_exec_time / calls * 1000)::numeric) AS mean_exec_us,
       round(shared_blks_hit::numeric / calls, 1) AS hits_per_call,
       round(wal_bytes / greatest(rows, 1)) AS wal_bytes_per_row,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS statement
FROM pg_stat_statements
WHERE query LIKE %s
ORDER BY total_exec_time DESC
LIMIT 6
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""), help="private server")
    parser.add_argument("--messages", type=int, default=3000, help="messages to drain")
    parser.add_argument("--qty", type=int, default=1, help="messages per claim")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    schema = f"pgq_bench_profile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        migrate.migrate(admin, schema)
        try:
            queue = Queue(admin, schema)
            for priority in range(1, 11):
                payloads = [json.dumps({"n": i}) for i in range(args.messages // 10)]
                queue.send_many(payloads, queue=QUEUE, priority=priority)
            admin.execute(sql.SQL("VACUUM (ANALYZE) {}").format(
                sql.Identifier(schema, "messages")))
            try:
                admin.execute("SELECT pg_stat_statements_reset()")
                server_stats = True
            except psycopg.Error:
                server_stats = False
            profile = cProfile.Profile()
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                consumer = Queue(conn, schema)
                done = 0
                started = time.perf_counter()
                profile.enable()
                while found := consumer.claim(queue=QUEUE, qty=args.qty, vt=300):
                    consumer.ack([m.msg_id for m in found])
                    done += len(found)
                profile.disable()
                seconds = time.perf_counter() - started
            print(f"{done} messages, qty {args.qty}: {done / seconds:,.0f} msg/s (under cProfile)")
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
            if server_stats:
                rows = admin.execute(STATEMENT_STATS, (f"%{schema}%",)).fetchall()
                print("calls    rows  mean_us  hits/call  wal_bytes/row  statement")
                for calls, rows_, mean_us, hits, wal, statement in rows:
                    print(f"{calls:>5} {rows_:>7} {mean_us:>8} {hits:>10} {wal:>14}  {statement}")
            else:
                print("pg_stat_statements is not installed here: client profile only")
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
