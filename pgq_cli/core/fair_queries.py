"""The SQL of fair claiming (sql/0003, sql/0004; docs/fairness.md), beside queries.py.

Placeholders as in queries.py: `{messages}`, `{queues}`, `{fair_keys}` (the per-(queue, key)
table) and `{fair_claim}` (the claim function) are schema-qualified identifiers filled in by
`Queue`; values are always bound parameters. The key '' in fair_keys is the lane of
messages sent without a key.
"""

from typing import LiteralString

# The claim of a fair queue: one call of the function the migration defines (it needs a
# fresh snapshot per step, which only a function gives in one round trip).
FAIR_CLAIM: LiteralString = """
SELECT msg_id, queue, priority, state, vt, read_ct, enqueued_at, lease, payload, key
FROM {fair_claim}(%(queue)s, %(qty)s, %(vt)s, %(min_priority)s, %(max_priority)s)
"""

# The fair claim's probe of one key's ready messages, as fair_claim (sql/0003) runs it in
# its LATERAL join, for `pgq doctor` to EXPLAIN (tests/test_fairness_doctor.py checks that
# the function still probes this way).
FAIR_KEY_PROBE: LiteralString = """
SELECT r.msg_id, r.priority
FROM {messages} AS r
WHERE r.queue = %(queue)s
  AND coalesce(r.key, '') = %(key)s
  AND r.state = 'ready'
  AND r.priority BETWEEN %(min_priority)s AND %(max_priority)s
ORDER BY r.priority DESC, r.msg_id
LIMIT %(limit)s
"""

# Whether the queue's claims go through FAIR_CLAIM (Queue.claim caches the answer).
IS_FAIR: LiteralString = """
SELECT coalesce((SELECT fair FROM {queues} WHERE queue = %(queue)s), false)
"""

GET_FAIRNESS: LiteralString = """
SELECT queue, fair, max_inflight_per_key
FROM {queues}
WHERE queue = %(queue)s
"""

# Turn fairness on or off and/or set the cap; options not given keep their value
# (%(set_fair)s / %(set_cap)s say which are given).
CONFIGURE_FAIRNESS: LiteralString = """
INSERT INTO {queues} AS s (queue, fair, max_inflight_per_key)
VALUES (%(queue)s, coalesce(%(fair)s, false), %(cap)s)
ON CONFLICT (queue) DO UPDATE
SET fair = CASE WHEN %(set_fair)s THEN excluded.fair ELSE s.fair END,
    max_inflight_per_key = CASE
        WHEN %(set_cap)s THEN excluded.max_inflight_per_key
        ELSE s.max_inflight_per_key
    END,
    updated_at = now()
RETURNING queue, fair, max_inflight_per_key
"""

# When a queue turns fair, the keys of the work already waiting in it are registered (the
# triggers only see work that becomes ready from now on). First every key of the queue
# forgets its head, then each key with ready work gets the priority of its best message.
# Reads the queue's ready rows once, through messages_fair_ready_idx (cost grows with the
# queue's ready backlog; it runs once, in `pgq queue config --fair`).
FORGET_HEADS: LiteralString = """
UPDATE {fair_keys}
SET head_priority = NULL
WHERE queue = %(queue)s
  AND head_priority IS NOT NULL
"""

REGISTER_READY_KEYS: LiteralString = """
INSERT INTO {fair_keys} AS k (queue, key, head_priority)
SELECT queue, coalesce(key, ''), max(priority)
FROM {messages}
WHERE queue = %(queue)s
  AND state = 'ready'
GROUP BY queue, coalesce(key, '')
ON CONFLICT (queue, key) DO UPDATE
SET head_priority = excluded.head_priority
"""

# A key's weight; a key not seen yet is registered with it (its clock caught up to the
# queue's, like a key that gets work after being idle).
SET_KEY_WEIGHT: LiteralString = """
INSERT INTO {fair_keys} AS k (queue, key, weight, vtime)
VALUES (%(queue)s, %(key)s, %(weight)s, {fair_clock}(%(queue)s))
ON CONFLICT (queue, key) DO UPDATE
SET weight = excluded.weight
RETURNING queue, key, weight, inflight
"""

# `pgq stats --by-key`: ready, leased and delayed counts per key of one queue, the top
# %(limit)s keys by ready depth. One pass over the queue's rows (the count is exact, so it
# reads every row of the queue; docs/fairness.md gives the measured cost).
STATS_BY_KEY: LiteralString = """
SELECT key,
       count(*) FILTER (WHERE state = 'ready') AS ready,
       count(*) FILTER (WHERE state = 'leased') AS leased,
       count(*) FILTER (WHERE state = 'delayed') AS delayed
FROM {messages}
WHERE queue = %(queue)s
  AND state IN ('ready', 'leased', 'delayed')
GROUP BY key
ORDER BY ready DESC, leased DESC, key NULLS FIRST
LIMIT %(limit)s
"""

# The same for every fair queue (or one), every key: Prometheus keeps the top keys and
# sums the rest into one series (Queue.key_breakdown). One pass over those queues' rows.
FAIR_QUEUES_BY_KEY: LiteralString = """
SELECT m.queue,
       m.key,
       count(*) FILTER (WHERE m.state = 'ready') AS ready,
       count(*) FILTER (WHERE m.state = 'leased') AS leased,
       count(*) FILTER (WHERE m.state = 'delayed') AS delayed
FROM {messages} AS m
JOIN {queues} AS s ON s.queue = m.queue AND s.fair
WHERE (%(queue)s::text IS NULL OR m.queue = %(queue)s)
  AND m.state IN ('ready', 'leased', 'delayed')
GROUP BY m.queue, m.key
"""
