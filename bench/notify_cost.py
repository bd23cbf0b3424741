"""What the claim --wait wake-up triggers (sql/0002) cost: bulk send and claim, on vs off.

Usage: .venv/bin/python bench/notify_cost.py [ADMIN_DSN] [--rows N] [--claims N] [--runs N]

Creates a scratch database, migrates it, and for each run measures (with the NOTIFY
triggers enabled, then disabled with ALTER TABLE ... DISABLE TRIGGER):
  - `send_many` of N rows (one COPY) and how many notifications a listener received;
  - N claims of qty 1 (client-side median and p99, ms) followed by an ack each.
Drops the scratch database at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import psycopg
from psycopg import conninfo, sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

TRIGGERS = ("messages_notify_inserted", "messages_notify_became_ready")


def set_triggers(conn: psycopg.Connection[tuple[object, ...]], enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for name in TRIGGERS:
        conn.execute(
            sql.SQL("ALTER TABLE pgq.messages {} TRIGGER {}").format(
                sql.SQL(verb), sql.Identifier(name)
            )
        )


def one_run(dsn: str, enabled: bool, rows: int, claims: int) -> dict[str, float]:
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(
        dsn, autocommit=True
    ) as listener:
        conn.execute("TRUNCATE pgq.messages")
        set_triggers(conn, enabled)
        listener.execute('LISTEN "pgq_ready:pgq"')
        q = Queue(conn)
        payloads = [f'{{"n": {i}}}' for i in range(rows)]
        started = time.perf_counter()
        q.send_many(payloads, queue="bench")
        send_s = time.perf_counter() - started
        notified = sum(1 for _ in listener.notifies(timeout=0.5))
        latencies = []
        for _ in range(claims):
            t0 = time.perf_counter()
            got = q.claim(queue="bench")
            latencies.append((time.perf_counter() - t0) * 1000)
            q.ack([got[0].msg_id])
        latencies.sort()
        return {
            "send_s": send_s,
            "notifications": notified,
            "claim_p50_ms": statistics.median(latencies),
            "claim_p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("admin_dsn", nargs="?", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = f"pgq_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = conninfo.make_conninfo(args.admin_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn)
        for run in range(args.runs):
            for enabled in (True, False):
                r = one_run(dsn, enabled, args.rows, args.claims)
                print(
                    f"run {run + 1} triggers {'on ' if enabled else 'off'}: "
                    f"send_many {args.rows} rows {r['send_s']:.2f} s, "
                    f"notifications {r['notifications']:.0f}, "
                    f"claim p50 {r['claim_p50_ms']:.3f} ms p99 {r['claim_p99_ms']:.3f} ms"
                )
    finally:
        with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
