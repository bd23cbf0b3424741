"""Rolling upgrades: consumers and producers of the previous release keep working against
a schema with every migration of this one applied (migrations are additive).

The statements below are copied verbatim from the previous release, pgq 0.1.0 (commit
32b1344, pgq_cli/core/queries.py as of then): a test fixture, not code of this package. They
run against the `db_dsn` database, which has every migration in sql/ applied.
"""

from __future__ import annotations

import json
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

# -- pgq 0.1.0 (commit 32b1344), verbatim ---------------------------------------------------

V010_INSERT_ONE: LiteralString = """
INSERT INTO {messages} (queue, priority, state, vt, payload)
VALUES (
    %(queue)s,
    %(priority)s,
    CASE WHEN %(delay)s > 0 THEN 'delayed' ELSE 'ready' END,
    now() + make_interval(secs => %(delay)s),
    %(payload)s::jsonb
)
RETURNING msg_id
"""

V010_RETURN_DUE: LiteralString = """
WITH due AS (
    SELECT msg_id
    FROM {messages}
    WHERE queue = %(queue)s
      AND state IN ('leased', 'delayed')
      AND vt <= now()
    ORDER BY vt
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
),
settings AS (
    SELECT max_deliveries FROM {queues} WHERE queue = %(queue)s
)
UPDATE {messages} AS m
SET state = CASE
        WHEN m.read_ct >= (SELECT max_deliveries FROM settings) THEN 'dead'
        ELSE 'ready'
    END,
    vt = CASE WHEN m.read_ct >= (SELECT max_deliveries FROM settings) THEN now() ELSE m.vt END,
    lease = NULL
FROM due
WHERE m.msg_id = due.msg_id
"""

V010_CLAIM: LiteralString = """
WITH locked AS (
    SELECT msg_id
    FROM {messages}
    WHERE queue = %(queue)s
      AND state = 'ready'
      AND priority BETWEEN %(min_priority)s AND %(max_priority)s
      AND priority >= (
          SELECT coalesce(max(paused_below_priority), 1)
          FROM {queues}
          WHERE queue = %(queue)s
      )
      AND NOT EXISTS (
          SELECT 1
          FROM {queues}
          WHERE queue = %(queue)s
            AND paused
      )
    ORDER BY priority DESC, msg_id
    LIMIT %(qty)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {messages} AS m
SET state = 'leased',
    vt = now() + make_interval(secs => %(vt)s),
    read_ct = m.read_ct + 1,
    lease = gen_random_uuid()
FROM locked
WHERE m.msg_id = locked.msg_id
RETURNING m.msg_id, m.queue, m.priority, m.state, m.vt, m.read_ct, m.enqueued_at,
          m.lease, m.payload
"""

V010_ACK: LiteralString = """
DELETE FROM {messages}
WHERE msg_id = ANY(%(ids)s)
  AND (%(lease)s::uuid IS NULL OR lease = %(lease)s::uuid)
RETURNING msg_id
"""

V010_REQUEUE: LiteralString = """
UPDATE {messages} AS m
SET state = CASE
        WHEN m.read_ct >= (SELECT max_deliveries FROM {queues} WHERE queue = m.queue)
            THEN 'dead'
        WHEN %(delay)s > 0 THEN 'delayed'
        ELSE 'ready'
    END,
    vt = CASE
        WHEN m.read_ct >= (SELECT max_deliveries FROM {queues} WHERE queue = m.queue)
            THEN now()
        ELSE now() + make_interval(secs => %(delay)s)
    END,
    lease = NULL
WHERE m.msg_id = ANY(%(ids)s)
  AND m.state <> 'dead'
  AND (%(lease)s::uuid IS NULL OR m.lease = %(lease)s::uuid)
RETURNING m.msg_id, m.state
"""

# --------------------------------------------------------------------------------------------


def _old(statement: LiteralString) -> sql.Composed:
    """Formatted as 0.1.0 did: its placeholders were {messages} and {queues} only."""
    return sql.SQL(statement).format(
        messages=sql.Identifier("pgq", "messages"), queues=sql.Identifier("pgq", "queues")
    )


def _old_claim(conn: psycopg.Connection[Any], qty: int, vt: float = 30) -> list[dict[str, Any]]:
    params = {"queue": "jobs", "qty": qty, "vt": vt, "min_priority": 1, "max_priority": 10,
              "batch": 1000}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_old(V010_RETURN_DUE), params)
        cur.execute(_old(V010_CLAIM), params)
        return sorted(cur.fetchall(), key=lambda r: (-r["priority"], r["msg_id"]))


def test_the_schema_is_ahead_of_the_previous_release(conn: psycopg.Connection[Any]) -> None:
    # 0.1.0 shipped migrations 0001 and 0002; this schema has more, all applied.
    assert migrate.schema_version(conn) > 2
    assert all(s.applied_at is not None for s in migrate.status(conn))


def test_a_consumer_of_the_previous_release_claims_acks_and_requeues(
    conn: psycopg.Connection[Any], q: Queue
) -> None:
    # Sent by this release: one with a dedup key (a row in the new table as well).
    new_ids = [q.send(json.dumps({"n": 1}), queue="jobs", priority=3, dedup_key="k-1"),
               q.send(json.dumps({"n": 2}), queue="jobs", priority=9)]
    # Sent by the previous release's producer.
    row = conn.execute(_old(V010_INSERT_ONE), {"queue": "jobs", "priority": 5, "delay": 0,
                                                "payload": '{"n": 3}'}).fetchone()
    assert row is not None
    old_id = int(row[0])

    claimed = _old_claim(conn, qty=3)
    assert [r["msg_id"] for r in claimed] == [new_ids[1], old_id, new_ids[0]]  # 9, 5, 3
    assert {r["state"] for r in claimed} == {"leased"}

    # Ack with the lease: fenced as before.
    first = claimed[0]
    acked = conn.execute(_old(V010_ACK), {"ids": [first["msg_id"]], "lease": first["lease"]})
    assert [r[0] for r in acked.fetchall()] == [first["msg_id"]]

    # Requeue with the lease: back to ready, and claimable again by old and new code.
    second = claimed[1]
    requeued = conn.execute(
        _old(V010_REQUEUE), {"ids": [second["msg_id"]], "lease": second["lease"], "delay": 0}
    ).fetchall()
    assert requeued == [(second["msg_id"], "ready")]
    again = _old_claim(conn, qty=5)
    assert [(r["msg_id"], r["read_ct"]) for r in again] == [(old_id, 2)]

    # A stale lease still fences the old ack.
    stale = conn.execute(_old(V010_ACK), {"ids": [old_id], "lease": second["lease"]})
    assert stale.fetchall() == []

    # This release sees the old consumer's work as its own: acks the rest.
    assert q.ack([old_id], lease=again[0]["lease"]) == [old_id]
    assert q.ack([claimed[2]["msg_id"]], lease=claimed[2]["lease"]) == [claimed[2]["msg_id"]]
    assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (0,)
    # The dedup record outlives the acks, as this release needs it to.
    assert q.send(json.dumps({"n": 1}), queue="jobs", dedup_key="k-1") == new_ids[0]
