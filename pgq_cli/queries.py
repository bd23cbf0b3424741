"""Every SQL statement the queue runs, in one place.

`{messages}` stands for the schema-qualified messages table; `Queue` fills it in once with
`psycopg.sql.Identifier`, so no identifier is ever built by string formatting. Queue names
are always bound parameters.

States: 'ready' (claimable), 'leased' (claimed; vt is when the lease runs out),
'delayed' (vt is when it becomes due), 'dead' (kept for inspection, never claimed).
"""

from typing import LiteralString

MESSAGE_COLUMNS: LiteralString = (
    "msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload"
)

INSERT_ONE: LiteralString = """
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

# Bulk send reserves ids first so that COPY (which returns nothing) can write them, and the
# ids come back in input order: FIFO within a priority follows the file's line order.
RESERVE_IDS: LiteralString = """
SELECT nextval(pg_get_serial_sequence(%(table)s, 'msg_id'))
FROM generate_series(1, %(count)s)
"""

COPY_IN: LiteralString = """
COPY {messages} (msg_id, queue, priority, state, vt, payload)
FROM STDIN
"""

# Step 1 of a claim, sent in the same round trip as step 2 (pipeline): expired leases and
# due delayed messages go back to ready. It has to be its own statement: rows changed by
# a data-modifying CTE are invisible to its sibling CTEs (one snapshot), so a combined
# statement would let an expired lease wait for one more claim.
# Bounded: at most %(batch)s rows per claim, oldest first, so a mass expiry (a million
# leases running out at once) costs each claim a bounded amount. SKIP LOCKED lets
# concurrent claimers return disjoint sets.
RETURN_DUE: LiteralString = """
WITH due AS (
    SELECT msg_id
    FROM {messages}
    WHERE queue = %(queue)s
      AND state IN ('leased', 'delayed')
      AND vt <= now()
    ORDER BY vt
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {messages} AS m
SET state = 'ready',
    lease = NULL
FROM due
WHERE m.msg_id = due.msg_id
"""

# The same, across all queues or one, for `pgq requeue --expired` (cron).
RETURN_DUE_ANY_QUEUE: LiteralString = """
WITH due AS (
    SELECT msg_id
    FROM {messages}
    WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND state IN ('leased', 'delayed')
      AND vt <= now()
    ORDER BY vt
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {messages} AS m
SET state = 'ready',
    lease = NULL
FROM due
WHERE m.msg_id = due.msg_id
"""

# Step 2 of a claim. Lock exactly n candidates in a CTE, then update by joining it.
# - The CTE holding FOR UPDATE is never inlined, so LIMIT is applied once. The tempting
#   `UPDATE ... WHERE msg_id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` can be re-run
#   per outer row when the planner puts it inside a nested loop, claiming far more than n
#   (DESIGN.md; tests/test_claim_plan.py forces that plan).
# - SKIP LOCKED: concurrent claimers take disjoint rows instead of queueing on each other.
# - Only ready rows are in messages_ready_idx, so in-flight work is never walked past.
# - RETURNING order is unspecified: the caller re-sorts by (priority DESC, msg_id).
CLAIM: LiteralString = """
WITH locked AS (
    SELECT msg_id
    FROM {messages}
    WHERE queue = %(queue)s
      AND state = 'ready'
      AND priority BETWEEN %(min_priority)s AND %(max_priority)s
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

# What a state looks like from outside, without writing: a leased row past its vt is
# 'expired' (the next claim returns it), a delayed row past its vt is already 'ready'.
EFFECTIVE_STATE: LiteralString = """
CASE
    WHEN state = 'delayed' AND vt <= now() THEN 'ready'
    WHEN state = 'leased' AND vt <= now() THEN 'expired'
    ELSE state
END
"""

PEEK: LiteralString = (
    """
SELECT msg_id, queue, priority, """
    + EFFECTIVE_STATE
    + """ AS state, vt, read_ct, enqueued_at, lease, payload
FROM {messages}
WHERE queue = %(queue)s
  AND (%(state)s::text = 'all' OR """
    + EFFECTIVE_STATE
    + """ = %(state)s)
ORDER BY priority DESC, msg_id
LIMIT %(limit)s
"""
)

# Peek at ready work uses the claim's own index (and shows exactly what claim would take,
# before due/expired rows are returned).
PEEK_READY: LiteralString = """
SELECT msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload
FROM {messages}
WHERE queue = %(queue)s
  AND state = 'ready'
ORDER BY priority DESC, msg_id
LIMIT %(limit)s
"""

# ack = delete. With a lease token, only while that token is the current lease.
ACK: LiteralString = """
DELETE FROM {messages}
WHERE msg_id = ANY(%(ids)s)
  AND (%(lease)s::uuid IS NULL OR lease = %(lease)s::uuid)
RETURNING msg_id
"""

REQUEUE: LiteralString = """
UPDATE {messages}
SET state = CASE WHEN %(delay)s > 0 THEN 'delayed' ELSE 'ready' END,
    vt = now() + make_interval(secs => %(delay)s),
    lease = NULL
WHERE msg_id = ANY(%(ids)s)
  AND state <> 'dead'
  AND (%(lease)s::uuid IS NULL OR lease = %(lease)s::uuid)
RETURNING msg_id
"""

EXTEND: LiteralString = """
UPDATE {messages}
SET vt = now() + make_interval(secs => %(vt)s)
WHERE msg_id = %(msg_id)s
  AND state = 'leased'
  AND (%(lease)s::uuid IS NULL OR lease = %(lease)s::uuid)
RETURNING msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload
"""

# Which of the given ids exist at all (to tell "unknown id" from "stale lease").
EXISTING_IDS: LiteralString = """
SELECT msg_id
FROM {messages}
WHERE msg_id = ANY(%(ids)s)
"""

STATS: LiteralString = (
    """
SELECT queue,
       priority,
       count(*) FILTER (WHERE s = 'ready') AS ready,
       count(*) FILTER (WHERE s = 'leased') AS leased,
       count(*) FILTER (WHERE s = 'expired') AS expired,
       count(*) FILTER (WHERE s = 'delayed') AS delayed,
       count(*) FILTER (WHERE s = 'dead') AS dead,
       extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE s = 'ready'))
           AS oldest_ready_age_s,
       coalesce(max(read_ct), 0) AS max_read_ct
FROM (
    SELECT queue, priority, read_ct, enqueued_at, """
    + EFFECTIVE_STATE
    + """ AS s
    FROM {messages}
    WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
) AS m
GROUP BY queue, priority
ORDER BY queue, priority DESC
"""
)
