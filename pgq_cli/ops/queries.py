"""Every SQL statement of the operations commands (stats --estimate, doctor, watch).

Kept apart from `queries.py` (the hot path: send, claim, ack) so that the statements an
operator runs now and then do not crowd the ones every consumer runs. The same rules
hold: `{messages}` and `{queues}` stand for the schema-qualified tables, filled in with
`psycopg.sql.Identifier` by `Queue.compose`; queue names and numbers are bound parameters.
"""

from typing import LiteralString

from ..core.queries import EFFECTIVE_STATE, STATS_COUNTS

# ----------------------------------------------------------------------------- stats --estimate

# The table's size in pages (its file size: exact and instant, unlike planner statistics),
# to choose a sampling rate (stats --estimate) and to tell a small table (doctor).
TABLE_PAGES: LiteralString = """
SELECT pg_relation_size(%(table)s::regclass) / current_setting('block_size')::int
"""

# The rows not stored as 'ready' fall in three classes, each with a small partial index:
# due (leased or delayed, vt passed: expired leases and delayed messages now ready),
# waiting (leased or delayed, vt ahead: live leases and future delayed work) and dead.
# How many rows each class has, counted up to %(due_limit)s (etc.) rows by walking its
# index (no more): the caller passes the cap + 1 for a class the sample says is small (a
# class within the cap is then counted exactly) and 0 for one it says is large.
ESTIMATE_CLASS_SIZES: LiteralString = """
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM {messages}
        WHERE state IN ('leased', 'delayed') AND vt <= now()
          AND (%(queue)s::text IS NULL OR queue = %(queue)s)
        LIMIT %(due_limit)s) AS d) AS due,
    (SELECT count(*) FROM (
        SELECT 1 FROM {messages}
        WHERE state IN ('leased', 'delayed') AND vt > now()
          AND (%(queue)s::text IS NULL OR queue = %(queue)s)
        LIMIT %(waiting_limit)s) AS w) AS waiting,
    (SELECT count(*) FROM (
        SELECT 1 FROM {messages}
        WHERE state = 'dead'
          AND (%(queue)s::text IS NULL OR queue = %(queue)s)
        LIMIT %(dead_limit)s) AS x) AS dead
"""

# The classes within the cap (%(due)s, %(waiting)s, %(dead)s say which), exactly, through
# messages_due_idx and messages_dead_idx. The alert-worthy numbers (expired leases, dead
# letters) are usually small, so they are usually exact.
ESTIMATE_NOT_READY: LiteralString = (
    """
"""
    + STATS_COUNTS
    + """
FROM (
    SELECT queue, priority, read_ct, enqueued_at, """
    + EFFECTIVE_STATE
    + """ AS s
    FROM {messages}
    WHERE state IN ('leased', 'delayed')
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND ((%(due)s AND vt <= now()) OR (%(waiting)s AND vt > now()))
    UNION ALL
    SELECT queue, priority, read_ct, enqueued_at, 'dead'
    FROM {messages}
    WHERE %(dead)s
      AND state = 'dead'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
) AS m
GROUP BY queue, priority
"""
)

# The groups of ready rows (queue, priority) and the head of each group's line (lowest
# msg_id, the next one claim takes, whose age is the oldest ready age), without reading
# the groups: a loose index scan of messages_ready_idx, one seek per group, and one seek
# for each head.
ESTIMATE_READY_HEADS: LiteralString = """
WITH RECURSIVE grp AS (
    (SELECT queue, priority
     FROM {messages}
     WHERE state = 'ready'
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
     ORDER BY queue, priority DESC
     LIMIT 1)
    UNION ALL
    SELECT nxt.queue, nxt.priority
    FROM grp,
    LATERAL (
        -- Two index seeks, not one OR: `queue > x OR (queue = x AND priority < p)` is no
        -- range of the index (queue ASC, priority DESC), so the planner would walk the
        -- index from its start at every step (measured: a timeout at 10M rows). The next
        -- priority of the same queue first; only if there is none, the next queue. Append
        -- under LIMIT 1 runs the second seek only when the first finds nothing.
        (SELECT m.queue, m.priority
         FROM {messages} AS m
         WHERE m.state = 'ready'
           AND m.queue = grp.queue
           AND m.priority < grp.priority
         ORDER BY m.priority DESC
         LIMIT 1)
        UNION ALL
        (SELECT m.queue, m.priority
         FROM {messages} AS m
         WHERE m.state = 'ready'
           AND %(queue)s::text IS NULL
           AND m.queue > grp.queue
         ORDER BY m.queue, m.priority DESC
         LIMIT 1)
        LIMIT 1
    ) AS nxt
)
SELECT grp.queue,
       grp.priority,
       extract(epoch FROM now() - h.enqueued_at) AS age_s
FROM grp,
LATERAL (
    SELECT m.enqueued_at
    FROM {messages} AS m
    WHERE m.state = 'ready'
      AND m.queue = grp.queue
      AND m.priority = grp.priority
    ORDER BY m.queue, m.priority DESC, m.msg_id
    LIMIT 1
) AS h
"""

# The ready rows of the groups the sample says are small (%(queues)s[i], %(priorities)s[i]),
# counted up to %(cap)s + 1 each (an index-only walk in msg_id order where pages are
# all-visible), and below the cap their highest read_ct exactly.
ESTIMATE_READY_COUNTS: LiteralString = """
SELECT g.queue,
       g.priority,
       upto.counted,
       CASE WHEN upto.counted <= %(cap)s THEN
           (SELECT coalesce(max(r.read_ct), 0)
            FROM {messages} AS r
            WHERE r.state = 'ready' AND r.queue = g.queue AND r.priority = g.priority)
       ELSE 0 END AS max_read_ct
FROM unnest(%(queues)s::text[], %(priorities)s::int[]) AS g(queue, priority),
LATERAL (
    SELECT count(*) AS counted
    FROM (SELECT msg_id
          FROM {messages}
          WHERE state = 'ready'
            AND queue = g.queue
            AND priority = g.priority
          ORDER BY msg_id
          LIMIT %(cap)s + 1) AS c
) AS upto
"""

# For whatever is over the cap: a stratified block sample. The caller cuts the table into
# strata of adjacent blocks and draws one block from each: %(blocks)s[i], with
# %(weights)s[i] the size of its stratum in blocks. A TID range scan reads each drawn block
# (OFFSET 0 keeps the planner from turning the lateral into one scan of the table). Per
# cell (queue, priority, stored state, vt passed): `estimated`, the sum over drawn blocks
# of rows x weight, is unbiased whatever the blocks hold (a block that is empty or holds
# only dead tuples was drawn all the same and counts as 0: scaling by the blocks that
# showed rows would overestimate); `variance` is the collapsed-strata estimate of its
# variance, the squared difference between the two strata of each pair (1-2, 3-4, ...).
# Also the sample's highest read_ct (a lower bound of the true maximum) and oldest message.
ESTIMATE_SAMPLE: LiteralString = """
WITH per_block AS (
    SELECT d.i, m.queue, m.priority, m.state, m.vt <= now() AS due,
           count(*) * d.weight AS t,
           max(m.read_ct) AS max_read_ct,
           min(m.enqueued_at) AS oldest
    FROM unnest(%(blocks)s::bigint[], %(weights)s::float8[])
             WITH ORDINALITY AS d(block, weight, i),
    LATERAL (
        SELECT queue, priority, state, vt, read_ct, enqueued_at
        FROM {messages}
        WHERE ctid >= ('(' || d.block || ',0)')::tid
          AND ctid < ('(' || (d.block + 1) || ',0)')::tid
          AND (%(queue)s::text IS NULL OR queue = %(queue)s)
        OFFSET 0
    ) AS m
    GROUP BY d.i, d.weight, m.queue, m.priority, m.state, m.vt <= now()
),
per_pair AS (
    SELECT queue, priority, state, due,
           sum(t) AS t,
           sum(CASE WHEN i %% 2 = 1 THEN t ELSE -t END) AS diff,
           max(max_read_ct) AS max_read_ct,
           min(oldest) AS oldest
    FROM per_block
    GROUP BY (i - 1) / 2, queue, priority, state, due
)
SELECT queue,
       priority,
       state,
       due,
       sum(t) AS estimated,
       sum(diff * diff) AS variance,
       coalesce(max(max_read_ct), 0) AS max_read_ct,
       extract(epoch FROM now() - min(oldest)) AS oldest_age_s
FROM per_pair
GROUP BY queue, priority, state, due
"""

# The queues with rows not stored as ready, found by seeking messages_due_idx and
# messages_dead_idx (a loose index scan: one probe per queue, not one per row): the
# slices of a sampled class to count (ESTIMATE_SLICES), also those the sample missed.
ESTIMATE_NOT_READY_QUEUES: LiteralString = """
WITH RECURSIVE in_flight AS (
    (SELECT queue FROM {messages}
     WHERE state IN ('leased', 'delayed')
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT nxt.queue
    FROM in_flight AS f,
    LATERAL (SELECT m.queue FROM {messages} AS m
             WHERE m.state IN ('leased', 'delayed') AND m.queue > f.queue
               AND %(queue)s::text IS NULL
             ORDER BY m.queue LIMIT 1) AS nxt
),
dead AS (
    (SELECT queue FROM {messages}
     WHERE state = 'dead'
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT nxt.queue
    FROM dead AS d,
    LATERAL (SELECT m.queue FROM {messages} AS m
             WHERE m.state = 'dead' AND m.queue > d.queue
               AND %(queue)s::text IS NULL
             ORDER BY m.queue LIMIT 1) AS nxt
)
SELECT queue, 'in_flight' AS kind FROM in_flight
UNION ALL
SELECT queue, 'dead' FROM dead
"""

# One queue's share of a class (a slice: %(queues)s[i] and %(classes)s[i], 'due',
# 'waiting' or 'dead'), read through the class's index up to %(cap)s + 1 rows, by
# (priority, state stats shows). `slice_rows` is how many rows were read: at most the
# cap, the slice was read whole and its numbers are exact; over it, they are not used.
ESTIMATE_SLICES: LiteralString = (
    """
"""
    + STATS_COUNTS
    + """,
       cls,
       sum(count(*)) OVER (PARTITION BY queue, cls) AS slice_rows
FROM (
    SELECT c.queue, c.cls, m.priority, m.read_ct, m.enqueued_at, m.s
    FROM unnest(%(queues)s::text[], %(classes)s::text[]) AS c(queue, cls),
    LATERAL (
        (SELECT priority, read_ct, enqueued_at, """
    + EFFECTIVE_STATE
    + """ AS s
         FROM {messages}
         WHERE c.cls = 'due' AND state IN ('leased', 'delayed') AND queue = c.queue
           AND vt <= now()
         LIMIT %(cap)s + 1)
        UNION ALL
        (SELECT priority, read_ct, enqueued_at, state
         FROM {messages}
         WHERE c.cls = 'waiting' AND state IN ('leased', 'delayed') AND queue = c.queue
           AND vt > now()
         LIMIT %(cap)s + 1)
        UNION ALL
        (SELECT priority, read_ct, enqueued_at, 'dead'
         FROM {messages}
         WHERE c.cls = 'dead' AND state = 'dead' AND queue = c.queue
         LIMIT %(cap)s + 1)
    ) AS m
) AS m
GROUP BY queue, cls, priority
"""
)

# Pause flags for the estimate (the exact STATS reads them per group itself).
QUEUE_PAUSES: LiteralString = """
SELECT queue, paused, paused_below_priority
FROM {queues}
"""

# ----------------------------------------------------------------------------- watch

# Cumulative row counters of the messages table since the statistics were last reset:
# inserts are sends, updates are mostly claims (also requeues, extends, expired leases
# returned), deletes are acks (and purges). Watch shows their rate between frames.
TABLE_COUNTERS: LiteralString = """
SELECT n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
WHERE relid = %(table)s::regclass
"""

# Rows in the table by the planner's statistics (no scan): decides whether watch counts
# exactly or estimates.
TABLE_ROWS_ESTIMATE: LiteralString = """
SELECT greatest(reltuples, 0)::bigint
FROM pg_class
WHERE oid = %(table)s::regclass
"""

# ----------------------------------------------------------------------------- doctor

# Every migration the database has applied (`{migrations}`: the migrator's version table),
# to spot one that this package does not know (the database is newer than pgq).
APPLIED_VERSIONS: LiteralString = """
SELECT version
FROM {migrations}
"""

# The indexes the claim path depends on, whether they exist and are usable. An index
# left behind by a failed CREATE INDEX CONCURRENTLY exists but is not valid: the planner
# ignores it while every write still maintains it.
INDEXES: LiteralString = """
SELECT c.relname AS name, i.indisvalid AS valid, i.indisready AS ready
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = %(table)s::regclass
"""

# The claim plan check asks whether the claim *can* use its index: plan it once more with
# sequential and bitmap scans discouraged, for this transaction only.
PLANNER_PREFER_INDEX: LiteralString = """
SELECT set_config('enable_seqscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('enable_indexscan', 'on', true)
"""

# Dead tuples and vacuum history of the messages table (the statistics system's view; a
# session publishes its counts at most once a second, and one that then goes idle only
# after ~10 s, PostgreSQL 15+; VACUUM reports at once).
TABLE_HEALTH: LiteralString = """
SELECT n_live_tup,
       n_dead_tup,
       last_vacuum,
       last_autovacuum,
       extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum)) AS vacuumed_s_ago,
       coalesce(
           (SELECT option_value::boolean
            FROM pg_options_to_table(
                (SELECT reloptions FROM pg_class WHERE oid = %(table)s::regclass))
            WHERE option_name = 'autovacuum_enabled'),
           true
       ) AS table_autovacuum_on,
       current_setting('autovacuum')::boolean AS server_autovacuum_on
FROM pg_stat_user_tables
WHERE relid = %(table)s::regclass
"""

# Sessions whose snapshot or transaction id holds back the xmin horizon of this database
# for longer than %(max_age_s)s seconds: VACUUM cannot remove any row deleted after they
# began, so an acked message's tuple stays behind and the table bloats.
LONG_TRANSACTIONS: LiteralString = """
SELECT pid,
       usename,
       application_name,
       state,
       extract(epoch FROM now() - xact_start) AS xact_age_s,
       greatest(age(backend_xmin), age(backend_xid)) AS xid_age
FROM pg_stat_activity
WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
  AND pid <> pg_backend_pid()
  AND (datname = current_database() OR datname IS NULL)
  AND xact_start <= now() - make_interval(secs => %(max_age_s)s)
ORDER BY xact_start
"""

# Whether this role sees every session's transaction in pg_stat_activity (superusers and
# members of pg_read_all_stats do; others see only their own role's).
SEES_ALL_SESSIONS: LiteralString = """
SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
"""

# Leases that ran out and have not been returned yet (a range probe of messages_due_idx).
EXPIRED_LEASES: LiteralString = """
SELECT count(*) AS expired,
       extract(epoch FROM now() - min(vt)) AS oldest_s
FROM {messages}
WHERE state = 'leased'
  AND vt <= now()
"""

# -- replication (pgq doctor) ---------------------------------------------------------------

# Whether this server is a standby, and the settings that decide whether a commit waits
# for one. synchronous_commit is this session's value: the server's, unless the role or
# database overrides it (as pgq's own sessions would).
REPLICATION_SETTINGS: LiteralString = """
SELECT pg_is_in_recovery() AS standby,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('synchronous_standby_names') AS synchronous_standby_names
"""

# On a standby: how far behind the primary its replay is. The replay timestamp is that of
# the last transaction replayed, so an idle primary makes it look old: `caught_up` says
# whether everything received has been replayed.
STANDBY_REPLAY: LiteralString = """
SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS replay_age_s,
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AS caught_up,
       EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming
"""

# On a primary: every standby streaming from it. Without pg_read_all_stats (pg_monitor)
# every column but pid, user and application_name reads NULL.
STANDBYS: LiteralString = """
SELECT application_name,
       state,
       sync_state,
       extract(epoch FROM replay_lag) AS replay_lag_s,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS replay_lag_bytes
FROM pg_stat_replication
ORDER BY application_name, pid
"""

# Replication slots that hold back the xmin horizon (a physical slot whose standby runs
# with hot_standby_feedback): vacuum keeps every row deleted after it, in every table.
# catalog_xmin (logical slots) holds back only the system catalogs, so it is not listed.
SLOTS_HOLDING_XMIN: LiteralString = """
SELECT slot_name,
       slot_type,
       active,
       age(xmin) AS xmin_age,
       pg_wal_lsn_diff(
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                ELSE pg_current_wal_lsn() END,
           restart_lsn) AS retained_bytes
FROM pg_replication_slots
WHERE xmin IS NOT NULL
ORDER BY slot_name
"""
