"""WAL written per ack of an ordinary queue, with the fair counter's delete trigger as
migrated (AFTER, sql/0006), as it was (BEFORE, sql/0003) and with no delete trigger.

    .venv/bin/python bench/ack_wal.py --dsn "$DSN" --messages 2000

A scratch schema is migrated; each variant sends --messages messages, claims them all,
then acks them one at a time with pgq's ack statement (queries.ACK) under
`EXPLAIN (ANALYZE, WAL)`, which counts the WAL records this statement wrote and no other
session's. Records, not seconds: the same on a busy machine. (Full-page images, which
come after each checkpoint, are reported apart.) The schema is dropped afterwards. Not
part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate, queries
from pgq_cli.core.queue import Queue

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BEFORE_TRIGGER = """
CREATE TRIGGER messages_fair_lease_ended_delete
    BEFORE DELETE ON {messages}
    FOR EACH ROW
    WHEN (OLD.lease_counted AND OLD.state = 'leased')
    EXECUTE FUNCTION {function}()
"""
DROP_TRIGGER = "DROP TRIGGER messages_fair_lease_ended_delete ON {messages}"


def wal_per_ack(conn: psycopg.Connection[Any], q: Queue, messages: int) -> str:
    q.send_many(["{}"] * messages, queue="wal")
    claimed = []
    while found := q.claim(queue="wal", qty=100, vt=600):
        claimed += found
    explain = sql.SQL("EXPLAIN (ANALYZE, WAL, FORMAT JSON) ") + q.compose(queries.ACK)
    records = fpi = 0
    for m in claimed:
        row = conn.execute(explain, {"ids": [m.msg_id], "lease": m.lease}).fetchone()
        plan = row[0][0]["Plan"] if row else {}
        records += int(plan.get("WAL Records", 0))
        fpi += int(plan.get("WAL FPI", 0))
    return (f"{records / len(claimed):.2f} WAL records per ack "
            f"({fpi} full-page images in {len(claimed)} acks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages needs 1 or more")
    schema = f"pgq_bench_wal_{uuid.uuid4().hex[:8]}"
    names = {"messages": sql.Identifier(schema, "messages"),
             "function": sql.Identifier(schema, "fair_lease_ended")}
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        try:
            migrate.migrate(conn, schema)
            q = Queue(conn, schema)
            print(f"AFTER DELETE trigger (as migrated): {wal_per_ack(conn, q, args.messages)}")
            conn.execute(sql.SQL(DROP_TRIGGER).format(**names))
            conn.execute(sql.SQL(BEFORE_TRIGGER).format(**names))
            print(f"BEFORE DELETE trigger (sql/0003):   {wal_per_ack(conn, q, args.messages)}")
            conn.execute(sql.SQL(DROP_TRIGGER).format(**names))
            print(f"no delete trigger:                  {wal_per_ack(conn, q, args.messages)}")
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


if __name__ == "__main__":
    main()
