-- Why: the fair claim finds a key's next message with one probe of this index: ready rows
-- of one (queue, key) in claim order. It is kept to probes by key: its second condition
-- is always true, but the planner can only prove it from a condition on the key (the
-- fair probe's `coalesce(key, '') = ...`), so it never offers this index to the ordinary
-- claim, which wants a queue's ready rows whatever their key (messages_ready_idx). It must cover rows that exist already, and building
-- it inside a transaction would block every claim (a SHARE lock) for the whole heap scan:
-- seconds on a 10M-row table. So this file runs without a transaction (the marker line
-- below says so to the migrator), one statement at a time: CREATE INDEX CONCURRENTLY takes a
-- lock that does not conflict with claims, sends, acks or vacuum.
--
-- If an earlier run died halfway, the index may exist but be INVALID, and this file is
-- still pending: drop it first (concurrently too) and build it again.
--
-- pgq: no transaction

DROP INDEX CONCURRENTLY IF EXISTS messages_fair_ready_idx;

CREATE INDEX CONCURRENTLY messages_fair_ready_idx
    ON messages (queue, (coalesce(key, '')), priority DESC, msg_id)
    WHERE state = 'ready' AND coalesce(key, '') IS NOT NULL;
