"""Every SQL statement the queue runs, in one place.

`{messages}` stands for the schema-qualified messages table and `{queues}` for the
per-queue settings table (sql/0002); `Queue` fills them in with `psycopg.sql.Identifier`,
so no identifier is ever built by string formatting. Queue names are always bound
parameters.

States: 'ready' (claimable), 'leased' (claimed; vt is when the lease runs out),
'delayed' (vt is when it becomes due), 'dead' (kept for inspection, never claimed).
"""

from typing import LiteralString

MESSAGE_COLUMNS: LiteralString = (
    "msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload, key"
)

# A sent message's columns (queue, priority, state, vt, payload, key), one rule for every
# single send: with a delay it waits as 'delayed' until its vt, else it is ready now.
NEW_MESSAGE_VALUES: LiteralString = """%(queue)s,
    %(priority)s,
    CASE WHEN %(delay)s > 0 THEN 'delayed' ELSE 'ready' END,
    now() + make_interval(secs => %(delay)s),
    %(payload)s::jsonb,
    %(key)s"""

INSERT_ONE: LiteralString = (
    """
INSERT INTO {messages} (queue, priority, state, vt, payload, key)
VALUES (
    """
    + NEW_MESSAGE_VALUES
    + """
)
RETURNING msg_id
"""
)

# A send with a dedup key, in one statement (sql/0005). The key's record is written first,
# carrying the new message's id: INSERT … ON CONFLICT waits on the primary key for a racing
# sender of the same key to commit, then does nothing, or, when the record has outlived
# its queue's dedup window, takes it over. Only a sender whose record row was written
# inserts the message; every other one gets the first message's id (created = false),
# even if that message was acked long ago. A record committed by a racing sender after
# this statement began is not in its snapshot, so this may return no row: run it again.
INSERT_DEDUPLICATED: LiteralString = (
    """
WITH retention AS (
    SELECT coalesce(
        (SELECT dedup_window FROM {queues} WHERE queue = %(queue)s),
        make_interval(secs => %(default_window)s)
    ) AS dedup_window
),
recorded AS (
    INSERT INTO {dedup_keys} AS d (queue, dedup_key, msg_id)
    VALUES (%(queue)s, %(dedup_key)s, nextval(pg_get_serial_sequence(%(table)s, 'msg_id')))
    ON CONFLICT (queue, dedup_key) DO UPDATE
    SET msg_id = excluded.msg_id,
        created_at = now()
    WHERE d.created_at <= now() - (SELECT dedup_window FROM retention)
    RETURNING d.msg_id
),
inserted AS (
    INSERT INTO {messages} (msg_id, queue, priority, state, vt, payload, key)
    SELECT msg_id,
    """
    + NEW_MESSAGE_VALUES
    + """
    FROM recorded
    RETURNING msg_id
)
SELECT msg_id, true AS created
FROM inserted
UNION ALL
SELECT d.msg_id, false AS created
FROM {dedup_keys} AS d
WHERE d.queue = %(queue)s
  AND d.dedup_key = %(dedup_key)s
  AND NOT EXISTS (SELECT 1 FROM recorded)
"""
)

# Bulk send reserves ids first so that COPY (which returns nothing) can write them, and the
# ids come back in input order: FIFO within a priority follows the file's line order.
# One nextval per message (as an INSERT would take), but the ids travel back as a range
# when they are contiguous (no other writer took one meanwhile, the usual case), and as an
# array only when they are not. vt comes back as text, in this session's own format, so
# COPY reads back the very same instant.
# The sequence is looked up once (an InitPlan): `nextval(pg_get_serial_sequence(...))`
# repeats the catalog lookup for every row, 90% of the statement's time at 100,000 rows.
RESERVE_IDS: LiteralString = """
WITH reserved AS (
    SELECT nextval((SELECT pg_get_serial_sequence(%(table)s, 'msg_id')::regclass)) AS msg_id
    FROM generate_series(1, %(count)s)
)
SELECT (now() + make_interval(secs => %(delay)s))::text AS vt,
       min(msg_id) AS first_id,
       max(msg_id) AS last_id,
       CASE
           WHEN max(msg_id) - min(msg_id) + 1 = count(*) THEN NULL
           ELSE array_agg(msg_id ORDER BY msg_id)
       END AS scattered_ids
FROM reserved
"""

# Text format: the caller escapes backslash, tab, newline and carriage return in payloads.
COPY_IN: LiteralString = """
COPY {messages} (msg_id, queue, priority, state, vt, payload, key)
FROM STDIN
"""

# Step 1 of a claim when something is due (see CLAIM_UNLESS_DUE), sent in the same round
# trip as step 2 (pipeline): expired leases and due delayed messages go back to ready. It
# has to be its own statement: rows changed by a data-modifying CTE are invisible to its
# sibling CTEs (one snapshot), so a combined statement would let an expired lease wait for
# one more claim.
# Bounded: at most %(batch)s rows per claim, oldest first, so a mass expiry (a million
# leases running out at once) costs each claim a bounded amount. SKIP LOCKED lets
# concurrent claimers return disjoint sets.
# Dead letters: a row that has been delivered max_deliveries times (queues.max_deliveries,
# NULL = no limit) goes to 'dead' instead of 'ready', with vt = the moment it died, so it is
# never handed out more often. Delayed rows are checked too (the limit may have been
# lowered while they waited).
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

# The same, across all queues or one, for `pgq requeue --expired` (cron).
RETURN_DUE_ANY_QUEUE: LiteralString = """
WITH due AS (
    SELECT d.msg_id, s.max_deliveries
    FROM {messages} AS d
    LEFT JOIN {queues} AS s ON s.queue = d.queue
    WHERE (%(queue)s::text IS NULL OR d.queue = %(queue)s)
      AND d.state IN ('leased', 'delayed')
      AND d.vt <= now()
    ORDER BY d.vt
    LIMIT %(batch)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE {messages} AS m
SET state = CASE WHEN m.read_ct >= due.max_deliveries THEN 'dead' ELSE 'ready' END,
    vt = CASE WHEN m.read_ct >= due.max_deliveries THEN now() ELSE m.vt END,
    lease = NULL
FROM due
WHERE m.msg_id = due.msg_id
"""

# ----------------------------------------------------------------------------- the claim
# A claim is assembled from the named pieces below, so that every statement that claims
# (CLAIM, CLAIM_UNLESS_DUE, and any statement that claims as part of something larger)
# picks candidates, orders, locks and leases them the same way.

# The lowest priority a claim may take given the queue's pause settings: 11 (above every
# priority, so nothing) for a paused queue, the paused band's floor, or 1. One probe of the
# small queues table's primary key, uncorrelated, so it runs once per claim (an InitPlan);
# a queue with no settings row is not paused.
# A fair queue (sql/0003) yields nothing here either, in the same probe: its claims go
# through fair_claim, and a caller that still thought the queue ordinary learns otherwise
# from the empty result (Queue.claim).
CLAIM_PAUSE_FLOOR: LiteralString = """coalesce(
          (SELECT CASE WHEN paused OR fair THEN 11 ELSE paused_below_priority END
           FROM {queues}
           WHERE queue = %(queue)s),
          1
      )"""

# Which rows a claim may take: ready rows of the queue in the asked band, above the pause
# floor. Only ready rows are in messages_ready_idx, so in-flight work is never walked past.
CLAIM_CANDIDATE_FILTER: LiteralString = (
    """queue = %(queue)s
      AND state = 'ready'
      AND priority BETWEEN %(min_priority)s AND %(max_priority)s
      AND priority >= """
    + CLAIM_PAUSE_FLOOR
)

# Claim order and exactly-n: highest priority first, FIFO within a priority (the order of
# messages_ready_idx), the first n.
CLAIM_ORDER: LiteralString = """
    ORDER BY priority DESC, msg_id
    LIMIT %(qty)s"""

# SKIP LOCKED: concurrent claimers take disjoint rows instead of queueing on each other.
CLAIM_LOCK: LiteralString = """
    FOR UPDATE SKIP LOCKED"""

# The claim's candidates: the first n claimable rows in claim order.
# Without a lock clause, so that `pgq doctor` can EXPLAIN the claim's scan as a monitor
# role (FOR UPDATE needs the UPDATE privilege even under EXPLAIN); CLAIM adds the lock.
CLAIM_CANDIDATES: LiteralString = (
    """
    SELECT msg_id
    FROM {messages}
    WHERE """
    + CLAIM_CANDIDATE_FILTER
    + CLAIM_ORDER
)

# Nothing of the queue is due: no expired lease, no delayed message whose time has come.
# min(vt) is the first entry of the queue's range of messages_due_idx (ordered by vt): one
# index probe however many leased or delayed rows lie beyond now(). (An EXISTS with
# `vt <= now()` lets the planner pick a sequential scan that reads every in-flight row.)
# Uncorrelated, so it runs once per claim (an InitPlan).
NOTHING_DUE: LiteralString = """coalesce(
          (SELECT min(vt)
           FROM {messages}
           WHERE queue = %(queue)s
             AND state IN ('leased', 'delayed')),
          'infinity'
      ) > now()"""

# The candidates of CLAIM_UNLESS_DUE: none at all while something of the queue is due.
CLAIM_CANDIDATES_UNLESS_DUE: LiteralString = (
    """
    SELECT msg_id
    FROM {messages}
    WHERE """
    + CLAIM_CANDIDATE_FILTER
    + """
      AND """
    + NOTHING_DUE
    + CLAIM_ORDER
)

# The second half of every claim: lease the rows of the CTE `locked` with a fresh token
# each. RETURNING order is unspecified: the caller re-sorts by (priority DESC, msg_id).
LEASE_LOCKED: LiteralString = """
UPDATE {messages} AS m
SET state = 'leased',
    vt = now() + make_interval(secs => %(vt)s),
    read_ct = m.read_ct + 1,
    lease = gen_random_uuid()
FROM locked
WHERE m.msg_id = locked.msg_id
RETURNING m.msg_id, m.queue, m.priority, m.state, m.vt, m.read_ct, m.enqueued_at,
          m.lease, m.payload, m.key
"""

# Step 2 of a claim. Lock exactly n candidates in a CTE, then update by joining it.
# The CTE holding FOR UPDATE is never inlined, so LIMIT is applied once. The tempting
# `UPDATE ... WHERE msg_id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` can be re-run per
# outer row when the planner puts it inside a nested loop, claiming far more than n
# (docs/design.md; test_forced_nested_loop_in_form_over_claims_while_the_claim_stays_exact
# in tests/test_concurrency.py forces that plan).
# CLAIM_LOCKED is that CTE; the fused consumer loop (FUSED_ACK_CLAIM) claims with it and
# LEASE_LOCKED too, so both walk, lock, lease and return rows exactly as CLAIM does.
CLAIM_LOCKED: LiteralString = (
    "locked AS ("
    + CLAIM_CANDIDATES
    + CLAIM_LOCK
    + "\n)"
)

CLAIM: LiteralString = "\nWITH " + CLAIM_LOCKED + LEASE_LOCKED

# The claim's fast path: one statement, one round trip, when nothing of the queue is due
# (the common case). When something is due it claims nothing (the NOTHING_DUE InitPlan is a
# one-time filter: no ready row is read or locked), and `Queue.claim` then sends RETURN_DUE
# and CLAIM, so due work is returned first and competes for the batch by priority, exactly
# as if RETURN_DUE always ran. It also claims nothing on an empty or paused queue, where
# the fallback costs one more round trip with nothing to hand out.
CLAIM_UNLESS_DUE: LiteralString = (
    """
WITH locked AS ("""
    + CLAIM_CANDIDATES_UNLESS_DUE
    + CLAIM_LOCK
    + """
)"""
    + LEASE_LOCKED
)

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
    + """ AS state, vt, read_ct, enqueued_at, lease, payload, key
FROM {messages}
WHERE queue = %(queue)s
  AND (%(state)s::text = 'all' OR """
    + EFFECTIVE_STATE
    + """ = %(state)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
ORDER BY priority DESC, msg_id
LIMIT %(limit)s
"""
)

# Peek at ready work uses the claim's own index (and shows exactly what claim would take,
# before due/expired rows are returned).
PEEK_READY: LiteralString = """
SELECT msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload, key
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

# A message given back after its last allowed delivery goes dead (as in RETURN_DUE).
REQUEUE: LiteralString = """
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

EXTEND: LiteralString = """
UPDATE {messages}
SET vt = now() + make_interval(secs => %(vt)s)
WHERE msg_id = %(msg_id)s
  AND state = 'leased'
  AND (%(lease)s::uuid IS NULL OR lease = %(lease)s::uuid)
RETURNING msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload, key
"""

# Where each id that was not done stands now, to say what happened to it: gone (unknown),
# leased under another token (claimed again), or given back (ready, delayed, dead).
WHERE_NOW: LiteralString = """
SELECT msg_id, state, read_ct
FROM {messages}
WHERE msg_id = ANY(%(ids)s)
"""

# The numbers of `stats` per (queue, priority), over rows `m` with an effective state `s`:
# shared by the exact STATS and the estimate's exact part (pgq_cli/ops/queries.py).
STATS_COUNTS: LiteralString = """
SELECT queue,
       priority,
       count(*) FILTER (WHERE s = 'ready') AS ready,
       count(*) FILTER (WHERE s = 'leased') AS leased,
       count(*) FILTER (WHERE s = 'expired') AS expired,
       count(*) FILTER (WHERE s = 'delayed') AS delayed,
       count(*) FILTER (WHERE s = 'dead') AS dead,
       extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE s = 'ready'))
           AS oldest_ready_age,
       coalesce(max(read_ct), 0) AS max_read_ct"""

STATS: LiteralString = (
    """
"""
    + STATS_COUNTS
    + """,
       -- Whether claim skips this queue/priority (pgq pause); one PK probe per group.
       coalesce(
           (SELECT s.paused OR m.priority < s.paused_below_priority
            FROM {queues} AS s
            WHERE s.queue = m.queue),
           false
       ) AS paused
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


# ----------------------------------------------------------------------------- claim --wait

# When the next leased or delayed message of a queue comes due: a waiting claim sleeps no
# longer than this (a range probe on messages_due_idx).
NEXT_DUE: LiteralString = """
SELECT extract(epoch FROM min(vt) - now())
FROM {messages}
WHERE queue = %(queue)s
  AND state IN ('leased', 'delayed')
"""

# ----------------------------------------------------------------------------- dead letters

# Redrive: dead letters back to ready, oldest death first, at most %(limit)s per statement.
# read_ct starts again at 0, so a redriven message gets max_deliveries fresh attempts.
# %(older_than)s (seconds, NULL = any) is how long ago it died (vt of a dead row).
REDRIVE_DEAD: LiteralString = """
WITH picked AS (
    SELECT msg_id
    FROM {messages}
    WHERE state = 'dead'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(older_than)s::float8 IS NULL
           OR vt <= now() - make_interval(secs => %(older_than)s::float8))
    ORDER BY vt, msg_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {messages} AS m
SET state = 'ready',
    vt = now(),
    read_ct = 0,
    lease = NULL
FROM picked
WHERE m.msg_id = picked.msg_id
RETURNING m.msg_id
"""

# ----------------------------------------------------------------------------- queue settings

# Insert-or-update one setting; the other columns keep their values (or defaults).
CONFIGURE_QUEUE: LiteralString = """
INSERT INTO {queues} AS s (queue, max_deliveries)
VALUES (%(queue)s, %(max_deliveries)s)
ON CONFLICT (queue) DO UPDATE
SET max_deliveries = excluded.max_deliveries,
    updated_at = now()
RETURNING queue, max_deliveries, paused, paused_below_priority, updated_at
"""

# After a limit is set or lowered: waiting work that has already had its deliveries is
# dead now, so the limit holds for it too (otherwise claim would hand it out once more).
SWEEP_OVER_LIMIT: LiteralString = """
UPDATE {messages}
SET state = 'dead',
    vt = now()
WHERE queue = %(queue)s
  AND state IN ('ready', 'delayed')
  AND read_ct >= %(max_deliveries)s
"""

PAUSE_QUEUE: LiteralString = """
INSERT INTO {queues} AS s (queue, paused, paused_below_priority)
VALUES (%(queue)s, %(paused)s, %(below)s)
ON CONFLICT (queue) DO UPDATE
SET paused = excluded.paused,
    paused_below_priority = excluded.paused_below_priority,
    updated_at = now()
RETURNING queue, max_deliveries, paused, paused_below_priority, updated_at
"""

# Resume also wakes `claim --wait`ers of the queue: its ready work is claimable again.
RESUME_QUEUE: LiteralString = """
UPDATE {queues}
SET paused = false,
    paused_below_priority = NULL,
    updated_at = now()
WHERE queue = %(queue)s
RETURNING queue, max_deliveries, paused, paused_below_priority, updated_at
"""

# A queue's dedup window (sql/0005); the other settings keep their values (or defaults).
CONFIGURE_DEDUP_WINDOW: LiteralString = """
INSERT INTO {queues} AS s (queue, dedup_window)
VALUES (%(queue)s, make_interval(secs => %(seconds)s))
ON CONFLICT (queue) DO UPDATE
SET dedup_window = excluded.dedup_window,
    updated_at = now()
RETURNING extract(epoch FROM dedup_window)::float8
"""

GET_DEDUP_WINDOW: LiteralString = """
SELECT extract(epoch FROM dedup_window)::float8
FROM {queues}
WHERE queue = %(queue)s
"""

NOTIFY_READY: LiteralString = """
SELECT pg_notify(%(channel)s, %(queue)s)
"""

GET_QUEUE: LiteralString = """
SELECT queue, max_deliveries, paused, paused_below_priority, updated_at
FROM {queues}
WHERE queue = %(queue)s
"""

# The configured queues (a row in queues): stats reports them at 0 once they drain, so
# their gauges do not go stale. Read here, never recorded on send (sends stay one INSERT).
CONFIGURED_QUEUES: LiteralString = """
SELECT queue, max_deliveries, paused, paused_below_priority, updated_at
FROM {queues}
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY queue
"""

# Every queue that has settings or messages, with its depth by state. Counting is a scan
# of the messages table (like stats); settings come from the small queues table.
LIST_QUEUES: LiteralString = (
    """
WITH depth AS (
    SELECT queue,
           count(*) FILTER (WHERE s = 'ready') AS ready,
           count(*) FILTER (WHERE s = 'leased') AS leased,
           count(*) FILTER (WHERE s = 'expired') AS expired,
           count(*) FILTER (WHERE s = 'delayed') AS delayed,
           count(*) FILTER (WHERE s = 'dead') AS dead
    FROM (SELECT queue, """
    + EFFECTIVE_STATE
    + """ AS s FROM {messages}) AS m
    GROUP BY queue
)
SELECT coalesce(q.queue, d.queue) AS queue,
       q.max_deliveries,
       coalesce(q.paused, false) AS paused,
       q.paused_below_priority,
       coalesce(d.ready, 0) AS ready,
       coalesce(d.leased, 0) AS leased,
       coalesce(d.expired, 0) AS expired,
       coalesce(d.delayed, 0) AS delayed,
       coalesce(d.dead, 0) AS dead
FROM {queues} AS q
FULL JOIN depth AS d ON d.queue = q.queue
ORDER BY 1
"""
)

# Queue names for shell completion, without counting anything: a loose index scan (one
# probe per distinct queue) over each partial index, plus the settings table. Cheap at any
# table size, and the caller bounds it with a short statement_timeout anyway.
# Each partial index of sql/0001 by its predicate, written as the index has it (the planner
# uses a partial index only for a query whose WHERE implies its predicate).
PARTIAL_INDEX_PREDICATES: dict[LiteralString, LiteralString] = {
    "ready": "state = 'ready'",  # messages_ready_idx
    "waiting": "state IN ('leased', 'delayed')",  # messages_due_idx
    "dead": "state = 'dead'",  # messages_dead_idx
}

# The distinct queue names in one partial index: a recursive CTE that probes for the next
# name after the last, once per distinct queue (a loose index scan). <cte> names it and
# <predicate> is the index's.
_DISTINCT_QUEUES_IN_INDEX: LiteralString = """
<cte> AS (
    (SELECT queue FROM {messages} WHERE <predicate> ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {messages} AS m
            WHERE m.<predicate> AND m.queue > <cte>.queue
            ORDER BY m.queue LIMIT 1)
    FROM <cte>
    WHERE <cte>.queue IS NOT NULL
)"""

# Queue names for shell completion, without counting anything: a loose index scan over
# each partial index (one CTE per index: one scan over all states would use none of them),
# plus the settings table. Cheap at any table size, and the caller bounds it with a short
# statement_timeout anyway.
QUEUE_NAMES: LiteralString = (
    "WITH RECURSIVE"
    + ",".join(
        _DISTINCT_QUEUES_IN_INDEX.replace("<cte>", cte).replace("<predicate>", predicate)
        for cte, predicate in PARTIAL_INDEX_PREDICATES.items()
    )
    + "\n"
    + "".join(
        "SELECT queue FROM " + cte + " WHERE starts_with(queue, %(prefix)s)\nUNION\n"
        for cte in PARTIAL_INDEX_PREDICATES
    )
    + """SELECT queue FROM {queues} WHERE starts_with(queue, %(prefix)s)
ORDER BY 1
LIMIT %(limit)s
"""
)


# ----------------------------------------------------------------------------- purge

# Which rows a purge selects. State is the effective state (as `peek` and `stats` show
# it: a leased row past its vt is 'expired', a due delayed row is 'ready'). Age counts
# from when the message was sent, except for dead letters, where it counts from when they
# died (vt of a dead row), as in `requeue --dead --older-than`.
_PURGE_FILTER: LiteralString = (
    """
    queue = %(queue)s
    AND (%(states)s::text[] IS NULL OR """
    + EFFECTIVE_STATE
    + """ = ANY(%(states)s::text[]))
    AND (%(older_than)s::float8 IS NULL
         OR CASE WHEN state = 'dead' THEN vt ELSE enqueued_at END
            <= now() - make_interval(secs => %(older_than)s::float8))
"""
)

# One batch: at most %(batch)s rows, in msg_id order after the last batch's highest id
# (keyset, so each batch starts where the previous stopped instead of walking past the
# dead tuples of earlier batches). SKIP LOCKED: a row a claimer holds at this instant is
# changing state; the purge leaves it rather than waiting (or deadlocking) on it.
# Each batch is its own autocommit statement, so locks live for one batch only.
PURGE_BATCH: LiteralString = (
    """
WITH doomed AS (
    SELECT msg_id
    FROM {messages}
    WHERE msg_id > %(after)s
      AND """
    + _PURGE_FILTER
    + """
    ORDER BY msg_id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {messages} AS m
USING doomed
WHERE m.msg_id = doomed.msg_id
RETURNING m.msg_id
"""
)

# --dry-run: how many rows the purge would delete now. Read-only, takes no row locks.
PURGE_COUNT: LiteralString = (
    """
SELECT count(*)
FROM {messages}
WHERE """
    + _PURGE_FILTER
)

# Purge also forgets the queue's dedup keys that have outlived its dedup window (sql/0005):
# a send with such a key would take the record over anyway, so nothing is deduplicated
# less; only the table stops growing. One statement: the records are small.
PURGE_EXPIRED_DEDUP_KEYS: LiteralString = """
DELETE FROM {dedup_keys}
WHERE queue = %(queue)s
  AND created_at <= now() - coalesce(
      (SELECT dedup_window FROM {queues} WHERE queue = %(queue)s),
      make_interval(secs => %(default_window)s)
  )
"""

COUNT_EXPIRED_DEDUP_KEYS: LiteralString = """
SELECT count(*)
FROM {dedup_keys}
WHERE queue = %(queue)s
  AND created_at <= now() - coalesce(
      (SELECT dedup_window FROM {queues} WHERE queue = %(queue)s),
      make_interval(secs => %(default_window)s)
  )
"""

# ----------------------------------------------------------------------------- consumer loop

# Queue.work's one statement per batch: acknowledge what the last batch finished and claim
# the next batch, in one round trip and one commit.
# - The ack is fenced per message: a row is deleted only while the lease token this worker
#   was given is still its lease, so a message whose lease ran out and was claimed by
#   someone else is left alone (and a resent ack after a lost connection deletes nothing
#   twice).
# - The acked rows are leased, never ready, so the claim's candidates (a snapshot taken
#   before the delete) cannot include them.
# - `(SELECT 1) LEFT JOIN claimed` returns one row even when nothing was claimed, so the
#   acked ids always come back; claimed columns are NULL in that row.
# - %(qty)s = 0 acks without claiming (the loop's last statement).
FUSED_ACK_CLAIM: LiteralString = (
    """
WITH acked AS (
    DELETE FROM {messages} AS m
    USING unnest(%(ack_ids)s::bigint[], %(ack_leases)s::uuid[]) AS a(msg_id, lease)
    WHERE m.msg_id = a.msg_id
      AND m.lease = a.lease
    RETURNING m.msg_id
),
"""
    + CLAIM_LOCKED
    + """,
claimed AS ("""
    + LEASE_LOCKED
    + """)
SELECT (SELECT array_agg(msg_id) FROM acked) AS acked, claimed.*
FROM (SELECT 1) AS one
LEFT JOIN claimed ON true
"""
)

# Messages a worker gives back, each with its own lease as the fence and its own outcome:
# - 'retry': ready again after %(delays)s seconds (delayed when > 0); a message that has had
#   its queue's max_deliveries goes dead instead, as with REQUEUE.
# - 'dead': dead at once (the handler rejected it).
# - 'release': never handed to the handler (the worker stopped first): ready at once and
#   read_ct back to what it was before this claim, so it does not count as a delivery.
GIVE_BACK: LiteralString = """
WITH settings AS (
    SELECT max_deliveries FROM {queues} WHERE queue = %(queue)s
),
given AS (
    SELECT g.msg_id,
           g.lease,
           g.delay,
           g.outcome = 'dead'
               OR (g.outcome = 'retry'
                   AND m.read_ct >= (SELECT max_deliveries FROM settings)) AS dies,
           g.outcome = 'release' AS released
    FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[], %(outcomes)s::text[],
                %(delays)s::float8[]) AS g(msg_id, lease, outcome, delay)
    JOIN {messages} AS m ON m.msg_id = g.msg_id
)
UPDATE {messages} AS m
SET state = CASE
        WHEN given.dies THEN 'dead'
        WHEN given.delay > 0 THEN 'delayed'
        ELSE 'ready'
    END,
    vt = CASE
        WHEN given.dies THEN now()
        ELSE now() + make_interval(secs => given.delay)
    END,
    read_ct = CASE WHEN given.released THEN greatest(m.read_ct - 1, 0) ELSE m.read_ct END,
    lease = NULL
FROM given
WHERE m.msg_id = given.msg_id
  AND m.state = 'leased'
  AND m.lease = given.lease
RETURNING m.msg_id, m.state
"""

# The worker's heartbeat: every message it holds gets its lease moved to %(vt)s from now,
# while the token it was given is still the lease (a lost lease stays lost).
EXTEND_HELD: LiteralString = """
UPDATE {messages} AS m
SET vt = now() + make_interval(secs => %(vt)s)
FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[]) AS h(msg_id, lease)
WHERE m.msg_id = h.msg_id
  AND m.state = 'leased'
  AND m.lease = h.lease
RETURNING m.msg_id
"""
