"""Churn bloat with and without partitions: a plain messages table beside a partitioned one.

    .venv/bin/python bench/partitions.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Run it on a server with autovacuum off (or slow), so the bloat is what churn leaves before
a vacuum gets to it. Two scratch schemas, both migrated by the real migrator; in the
second, `messages` is replaced by a table of the same columns and indexes partitioned by
RANGE (msg_id), `--partition-size` ids per partition (plain declarative partitioning,
what pg_partman automates). In each, in turn:

1. churn: send `--messages` in batches of 1,000 (`Queue.send_many`), then claim and ack
   them all (`Queue.claim` qty 100 + `Queue.ack`): msgs/s;
2. bloat: total size of the table and its indexes, and dead tuples, once drained;
3. the cost of an empty claim on the drained table (median of 50 `Queue.claim`): what
   consumers pay while the ready index is full of dead entries;
4. clean-up: plain, `VACUUM`; partitioned, detach and drop every drained partition.
   Its duration, the size after it, and the empty claim again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

QUEUE = "churn"


def _make_partitioned(conn: psycopg.Connection[Any], schema: str, partitions: int,
                      size: int) -> None:
    """Replace schema.messages by a RANGE (msg_id) partitioned table like it."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("ALTER TABLE {}.messages RENAME TO messages_plain").format(s))
    conn.execute(sql.SQL(
        "CREATE TABLE {s}.messages (LIKE {s}.messages_plain INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS INCLUDING IDENTITY) PARTITION BY RANGE (msg_id)").format(s=s))
    for number in range(partitions):
        conn.execute(sql.SQL(
            "CREATE TABLE {} PARTITION OF {}.messages FOR VALUES FROM ({}) TO ({})"
        ).format(sql.Identifier(schema, f"messages_p{number}"), s,
                 sql.Literal(number * size + 1), sql.Literal((number + 1) * size + 1)))
    for statement in (
        "ALTER TABLE {s}.messages ADD PRIMARY KEY (msg_id)",
        "CREATE INDEX ON {s}.messages (queue, priority DESC, msg_id) WHERE state = 'ready'",
        "CREATE INDEX ON {s}.messages (queue, vt) WHERE state IN ('leased', 'delayed')",
        "CREATE INDEX ON {s}.messages (queue, vt) WHERE state = 'dead'",
        "DROP TABLE {s}.messages_plain",
    ):
        conn.execute(sql.SQL(statement).format(s=s))  # type: ignore[arg-type]


def _size_and_dead(conn: psycopg.Connection[Any], schema: str) -> tuple[int, int]:
    row = conn.execute(
        """
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0),
               coalesce(sum(pg_stat_get_dead_tuples(c.oid)), 0)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE 'messages%%'
        """,
        (schema,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _empty_claim_ms(queue: Queue) -> float:
    times = []
    for _ in range(50):
        started = time.perf_counter()
        assert queue.claim(queue=QUEUE, qty=1) == []
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _run(dsn: str, partitioned: bool, messages: int, size: int) -> dict[str, Any]:
    schema = f"pgq_bench_parts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.migrate(conn, schema)
        if partitioned:
            _make_partitioned(conn, schema, -(-messages // size), size)
        queue = Queue(conn, schema)
        try:
            payload = json.dumps({"job": "x" * 100})
            started = time.perf_counter()
            for start in range(0, messages, 1000):
                queue.send_many([payload] * min(1000, messages - start), queue=QUEUE)
            while found := queue.claim(queue=QUEUE, qty=100, vt=300):
                queue.ack([m.msg_id for m in found])
            churn_s = time.perf_counter() - started
            # This session's statistics reach the shared counters when it next goes idle.
            conn.execute("SELECT pg_stat_force_next_flush()")
            size_bytes, dead = _size_and_dead(conn, schema)
            claim_ms = _empty_claim_ms(queue)
            started = time.perf_counter()
            if partitioned:
                rows = conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = %s::regclass", (f"{schema}.messages",)).fetchall()
                for (name,) in rows:
                    part = sql.Identifier(schema, name)
                    conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        sql.Identifier(schema, "messages"), part))
                    conn.execute(sql.SQL("DROP TABLE {}").format(part))
            else:
                conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, "messages")))
            cleanup_s = time.perf_counter() - started
            after_bytes, _ = _size_and_dead(conn, schema)
            return {
                "table": "partitioned" if partitioned else "plain",
                "churn_msgs_per_s": round(messages / churn_s),
                "size_drained_mb": round(size_bytes / 1_048_576, 1),
                "dead_tuples": dead,
                "empty_claim_ms": round(claim_ms, 2),
                "cleanup": "drop partitions" if partitioned else "VACUUM",
                "cleanup_s": round(cleanup_s, 3),
                "size_after_mb": round(after_bytes / 1_048_576, 1),
                "empty_claim_after_ms": round(_empty_claim_ms(queue), 2),
            }
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partition-size", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for partitioned in order:
            result = _run(args.dsn, partitioned, args.messages, args.partition_size)
            print(json.dumps({"round": round_ + 1, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
