"""Buffers and WAL records per claim and per ack of an ordinary queue, counted by the server
for each statement, with the fair lease-counter triggers as migrated and without them.

    .venv/bin/python bench/statement_counts.py --dsn "$DSN" --messages 1000
    # another build, e.g. the one before fair claiming:
    git archive 95ac6d6 pgq_cli sql | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before .venv/bin/python bench/statement_counts.py --dsn "$DSN"

For each variant a scratch schema is migrated (by the pgq_cli that is imported, so
PYTHONPATH picks the build), the variant's change to the triggers is made, --messages
messages are sent, and each is claimed (qty 1) and acked on its own under
`EXPLAIN (ANALYZE, WAL, BUFFERS)` with pgq's own statements (queries.CLAIM_UNLESS_DUE,
or CLAIM in a build without it, and queries.ACK). EXPLAIN counts what that statement did
and nothing of another session, so these are counts, not timings: the same on a busy
machine. Full-page images (after each checkpoint) are counted apart, not in the records.

Variants (the ones whose triggers a build lacks are skipped):
- as migrated;
- BEFORE DELETE: the lease counter's delete trigger as sql/0003 made it (sql/0006 moved it
  to AFTER): a BEFORE DELETE row trigger locks each row first;
- no BEFORE UPDATE: the lease counter's update trigger dropped;
- no row triggers: the three lease/ready row triggers of sql/0003 dropped.
The schemas are dropped afterwards. Not part of the test suite.
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
QUEUE = "counts"
DELETE_TRIGGER = "messages_fair_lease_ended_delete"
UPDATE_TRIGGER = "messages_fair_lease_ended_update"
READY_TRIGGER = "messages_fair_key_became_ready"
BEFORE_DELETE = """
CREATE TRIGGER messages_fair_lease_ended_delete
    BEFORE DELETE ON {messages}
    FOR EACH ROW
    WHEN (OLD.lease_counted AND OLD.state = 'leased')
    EXECUTE FUNCTION {function}()
"""
# name -> (triggers to drop, whether to create the BEFORE DELETE one)
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "as migrated": ((), False),
    "BEFORE DELETE (sql/0003)": ((DELETE_TRIGGER,), True),
    "no BEFORE UPDATE": ((UPDATE_TRIGGER,), False),
    "no row triggers": ((DELETE_TRIGGER, UPDATE_TRIGGER, READY_TRIGGER), False),
}


def _plan(conn: psycopg.Connection[Any], statement: sql.Composable,
          params: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, WAL, BUFFERS, FORMAT JSON) ") + statement, params
    ).fetchone()
    return dict(row[0][0]["Plan"]) if row else {}


def measure(conn: psycopg.Connection[Any], schema: str, messages: int) -> dict[str, float]:
    q = Queue(conn, schema)
    claim = q.compose(getattr(queries, "CLAIM_UNLESS_DUE", queries.CLAIM))
    ack = q.compose(queries.ACK)
    q.send_many(["{}"] * messages, queue=QUEUE)
    conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, "messages")))
    params = {"queue": QUEUE, "qty": 1, "vt": 600, "min_priority": 1, "max_priority": 10,
              "batch": 100}
    totals = dict.fromkeys(("claim buffers", "claim WAL", "ack buffers", "ack WAL", "FPI"), 0.0)
    for _ in range(messages):
        plan = _plan(conn, claim, params)
        totals["claim buffers"] += plan.get("Shared Hit Blocks", 0) + plan.get(
            "Shared Read Blocks", 0)
        totals["claim WAL"] += plan.get("WAL Records", 0)
        totals["FPI"] += plan.get("WAL FPI", 0)
        leased = conn.execute(
            sql.SQL("SELECT msg_id FROM {} WHERE queue = %s AND state = 'leased'").format(
                sql.Identifier(schema, "messages")), (QUEUE,)).fetchall()
        plan = _plan(conn, ack, {"ids": [r[0] for r in leased], "lease": None})
        totals["ack buffers"] += plan.get("Shared Hit Blocks", 0) + plan.get(
            "Shared Read Blocks", 0)
        totals["ack WAL"] += plan.get("WAL Records", 0)
        totals["FPI"] += plan.get("WAL FPI", 0)
    return {k: (v if k == "FPI" else v / messages) for k, v in totals.items()}


def _prepare(conn: psycopg.Connection[Any], schema: str, drop: tuple[str, ...],
             before_delete: bool) -> bool:
    """Migrate and change the triggers; False when this build lacks one of them."""
    migrate.migrate(conn, schema)
    messages = sql.Identifier(schema, "messages")
    present = {r[0] for r in conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass",
        (f"{schema}.messages",)).fetchall()}
    if not set(drop) <= present:
        return False
    for name in drop:
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), messages))
    if before_delete:
        conn.execute(sql.SQL(BEFORE_DELETE).format(
            messages=messages, function=sql.Identifier(schema, "fair_lease_ended")))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages needs 1 or more")
    print(f"per statement, mean of {args.messages} claims and acks at qty 1 "
          "(EXPLAIN ANALYZE, WAL, BUFFERS)")
    print(f"{'variant':<26} {'claim buffers':>13} {'claim WAL':>9} {'ack buffers':>11} "
          f"{'ack WAL':>7} {'FPI':>5}")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        for name, (drop, before_delete) in VARIANTS.items():
            schema = f"pgq_bench_counts_{uuid.uuid4().hex[:8]}"
            try:
                if not _prepare(conn, schema, drop, before_delete):
                    print(f"{name:<26} (this build has no such trigger)")
                    continue
                r = measure(conn, schema, args.messages)
                print(f"{name:<26} {r['claim buffers']:>13.2f} {r['claim WAL']:>9.2f} "
                      f"{r['ack buffers']:>11.2f} {r['ack WAL']:>7.2f} {r['FPI']:>5.0f}")
            finally:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))


if __name__ == "__main__":
    main()
