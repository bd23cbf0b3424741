-- Why: fair claiming across tenants (opt-in per queue). A message may carry a fairness key
-- (a tenant, org or customer id); a queue configured `--fair` rotates its claims across
-- the keys that have work at the highest claimable priority, with per-key weights and an
-- optional cap on live leases per key. docs/fairness.md explains the design.
--
-- Nothing here rewrites or scans the messages table, so it does not hold claims up on a
-- table of any size: ADD COLUMN without a default and a CHECK ... NOT VALID only change
-- the catalog. The brief ACCESS EXCLUSIVE lock they need waits at most lock_timeout (set
-- below) for running transactions, so claims queue behind it for at most that long; if it
-- cannot get the lock in time the migration fails (exit 75) and can simply be run again.
-- The index the fair claim probes is built by the next file, without a transaction
-- (CREATE INDEX CONCURRENTLY), because building it here would block claims for the whole
-- heap scan.

SET LOCAL lock_timeout = '500ms';

-- The fairness key. NULL: no key; such messages form a lane of their own ('' below).
ALTER TABLE messages ADD COLUMN key text;
-- 1-128 characters, no control characters; code checks the same with exit 2. NOT VALID:
-- existing rows (all NULL) are not scanned; every new or updated row is checked.
ALTER TABLE messages ADD CONSTRAINT messages_key_valid
    CHECK (char_length(key) BETWEEN 1 AND 128 AND key !~ '[[:cntrl:]]') NOT VALID;
-- true while this lease is counted in fair_keys.inflight (set by the fair claim, cleared by
-- the trigger that uncounts it). NULL for every lease of an ordinary queue, so acking those
-- never calls a function (the triggers' WHEN clauses are checked without one).
ALTER TABLE messages ADD COLUMN lease_counted boolean;

ALTER TABLE queues ADD COLUMN fair boolean NOT NULL DEFAULT false;
-- A key holding this many counted leases yields nothing to claim. NULL: no cap.
ALTER TABLE queues ADD COLUMN max_inflight_per_key integer;
ALTER TABLE queues ADD CONSTRAINT queues_max_inflight_per_key_positive
    CHECK (max_inflight_per_key > 0);

-- One row per (queue, key) of a fair queue: the claim walks this small table instead of
-- the messages, locks the keys it serves (SKIP LOCKED, so racing claimers serve different
-- keys and a key's cap counter is only ever changed under its row lock), then probes each
-- key's head through messages_fair_ready_idx.
CREATE TABLE fair_keys (
    queue         text             NOT NULL,
    -- '' is the lane of messages without a key (a real key is never empty).
    key           text             NOT NULL,
    -- Share of claims while several keys have backlog: weight 2 gets twice weight 1's.
    weight        double precision NOT NULL DEFAULT 1,
    -- Virtual time: advanced by 1/weight per message claimed. The key with the least goes
    -- first among keys whose head has the same priority. A key that gets work again after
    -- being idle catches up to the queue's clock (fair_clock) so it cannot claim a burst of
    -- "owed" turns.
    vtime         double precision NOT NULL DEFAULT 0,
    -- Live leases taken by the fair claim and not yet acked, requeued or expired.
    inflight      integer          NOT NULL DEFAULT 0,
    -- Priority of the key's best ready message; NULL: nothing ready. Raised by the triggers
    -- below when work becomes ready, recomputed by the claim for the keys it served.
    head_priority smallint,
    PRIMARY KEY (queue, key),
    CONSTRAINT fair_keys_weight_range CHECK (weight > 0 AND weight <= 1000),
    CONSTRAINT fair_keys_inflight_nonnegative CHECK (inflight >= 0)
) WITH (
    -- Every claim of a fair queue writes a new version of each key row it serves (its
    -- virtual time is indexed, so never a HOT update): vacuum it after a fixed number of
    -- dead rows, not a share of a table this small.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.1,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim's walk: highest head priority first, then least virtual time.
CREATE INDEX fair_keys_turn_idx
    ON fair_keys (queue, head_priority DESC, vtime, key)
    WHERE head_priority IS NOT NULL;
-- The queue's clock for a key that gets work after being idle: the least virtual time of
-- a key with work, or when none has work, the greatest of all.
CREATE INDEX fair_keys_backlogged_clock_idx
    ON fair_keys (queue, vtime)
    WHERE head_priority IS NOT NULL;
CREATE INDEX fair_keys_clock_idx
    ON fair_keys (queue, vtime);

-- The trigger functions below are SECURITY DEFINER (with a fixed search_path): fair_keys
-- is bookkeeping of the owner's, kept for whichever role sends, acks or requeues, so no
-- role needs a grant on it for that.
CREATE FUNCTION fair_clock(for_queue text) RETURNS double precision
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT coalesce(
        (SELECT vtime FROM fair_keys
         WHERE queue = for_queue AND head_priority IS NOT NULL
         ORDER BY vtime LIMIT 1),
        (SELECT vtime FROM fair_keys
         WHERE queue = for_queue
         ORDER BY vtime DESC LIMIT 1),
        0
    )
$$;

-- A key of a fair queue has work of this priority ready: register the key (its clock
-- caught up to the queue's) or raise its head priority. The upsert writes no new row
-- version when nothing changes (the common case: a key with a backlog), but it does lock
-- the key's row until the caller commits, which is what keeps the claim's view of the
-- key's head right (see fair_claim, step 3).
CREATE FUNCTION fair_key_has_work(for_queue text, for_key text, priority smallint)
RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO fair_keys AS k (queue, key, head_priority, vtime)
    VALUES (for_queue, for_key, priority, fair_clock(for_queue))
    ON CONFLICT (queue, key) DO UPDATE
    SET head_priority = greatest(k.head_priority, excluded.head_priority),
        vtime = CASE
            WHEN k.head_priority IS NULL THEN greatest(k.vtime, excluded.vtime)
            ELSE k.vtime
        END
    WHERE k.head_priority IS NULL OR k.head_priority < excluded.head_priority
$$;

-- Work became ready in a fair queue by send: once per INSERT or COPY statement (from its
-- transition table), once per key. For an ordinary queue the join with queues finds no
-- fair row and nothing is called. Keys go in (queue, key) order so that concurrent
-- multi-key sends lock their rows in one order.
CREATE FUNCTION fair_keys_sent() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM fair_key_has_work(i.queue, coalesce(i.key, ''), max(i.priority))
    FROM inserted AS i
    JOIN queues AS s ON s.queue = i.queue AND s.fair
    WHERE i.state = 'ready'
    GROUP BY i.queue, coalesce(i.key, '')
    ORDER BY i.queue, coalesce(i.key, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_fair_keys_sent
    AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION fair_keys_sent();

-- The same for a message that becomes ready by update: requeue, expired lease or due
-- delayed message returned, dead letter redriven.
CREATE FUNCTION fair_key_became_ready() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM queues WHERE queue = NEW.queue AND fair) THEN
        PERFORM fair_key_has_work(NEW.queue, coalesce(NEW.key, ''), NEW.priority);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_fair_key_became_ready
    AFTER UPDATE OF state ON messages
    FOR EACH ROW
    WHEN (NEW.state = 'ready' AND OLD.state <> 'ready')
    EXECUTE FUNCTION fair_key_became_ready();

-- A counted lease ends (ack, requeue, expiry, dead, purge): the key's cap counter goes
-- down, and the row forgets it was counted. BEFORE, so that an update can clear the flag
-- in the same row version. Only rows leased by the fair claim ever fire it.
CREATE FUNCTION fair_lease_ended() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE fair_keys
    SET inflight = greatest(inflight - 1, 0)
    WHERE queue = OLD.queue
      AND key = coalesce(OLD.key, '');
    IF TG_OP = 'UPDATE' THEN
        NEW.lease_counted := NULL;
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER messages_fair_lease_ended_update
    BEFORE UPDATE OF state ON messages
    FOR EACH ROW
    WHEN (OLD.lease_counted AND NEW.state <> 'leased')
    EXECUTE FUNCTION fair_lease_ended();

CREATE TRIGGER messages_fair_lease_ended_delete
    BEFORE DELETE ON messages
    FOR EACH ROW
    WHEN (OLD.lease_counted AND OLD.state = 'leased')
    EXECUTE FUNCTION fair_lease_ended();

-- The fair claim. A function, because it needs three snapshots in one round trip: each
-- statement of a VOLATILE plpgsql function reads the database afresh (READ COMMITTED).
-- Step 3 recomputes the head of each key it served, and "this key has nothing more"
-- is only true when read after taking the key's row lock: a message whose send
-- committed between step 1's snapshot and its lock would be missed otherwise, and its
-- key would sit with no head, never claimed.
--
-- 1. Lock the keys whose turn it is: highest head priority first, least virtual time
--    within it (fair_keys_turn_idx), skipping keys at their cap and keys another claimer
--    holds (SKIP LOCKED: racing claimers serve different keys, and a key's inflight
--    counter only changes under its row lock, so the cap holds).
-- 2. Probe each locked key's ready messages in claim order (messages_fair_ready_idx),
--    at most what its cap allows, and take the qty best: priority first, then each key's
--    n-th message at virtual time vtime + (n - 1) / weight, so a batch spreads across
--    keys as single claims would. Lease them (counted: lease_counted).
-- 3. Advance each served key's virtual time by taken / weight and its inflight by taken,
--    and read its new head priority (NULL: nothing ready, it leaves the turn index).
-- Nothing scans in-flight work or the backlog behind a key's head.
CREATE FUNCTION fair_claim(
    for_queue text,
    qty integer,
    lease_s double precision,
    min_priority integer,
    max_priority integer
) RETURNS SETOF messages
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    floor_priority integer;
    cap integer;
    served text[];
    claimed messages[];
BEGIN
    SELECT greatest(min_priority, coalesce(s.paused_below_priority, 1)), s.max_inflight_per_key
    INTO floor_priority, cap
    FROM queues AS s
    WHERE s.queue = for_queue
      AND s.fair
      AND NOT s.paused;
    IF NOT FOUND THEN
        RETURN;  -- not a fair queue (any more), or paused
    END IF;

    SELECT array_agg(turn.key)
    INTO served
    FROM (
        SELECT k.key
        FROM fair_keys AS k
        WHERE k.queue = for_queue
          -- A band (--min/--max-priority, a paused band) serves the keys whose best
          -- message is in it; a key with work above the band waits for a claim of that.
          AND k.head_priority BETWEEN floor_priority AND max_priority
          AND (cap IS NULL OR k.inflight < cap)
        ORDER BY k.head_priority DESC, k.vtime, k.key
        LIMIT qty
        FOR UPDATE SKIP LOCKED
    ) AS turn;
    IF served IS NULL THEN
        RETURN;
    END IF;

    WITH candidates AS (
        SELECT k.key,
               m.msg_id,
               m.priority,
               k.vtime + (row_number() OVER (PARTITION BY k.key, m.priority ORDER BY m.msg_id)
                          - 1) / k.weight AS due
        FROM fair_keys AS k
        CROSS JOIN LATERAL (
            SELECT r.msg_id, r.priority
            FROM messages AS r
            WHERE r.queue = for_queue
              AND coalesce(r.key, '') = k.key
              AND r.state = 'ready'
              AND r.priority BETWEEN floor_priority AND max_priority
            ORDER BY r.priority DESC, r.msg_id
            LIMIT CASE WHEN cap IS NULL THEN qty ELSE least(qty, cap - k.inflight) END
        ) AS m
        WHERE k.queue = for_queue
          AND k.key = ANY (served)
    ),
    chosen AS (
        SELECT msg_id
        FROM candidates
        ORDER BY priority DESC, due, key, msg_id
        LIMIT qty
    ),
    leased AS (
        UPDATE messages AS m
        SET state = 'leased',
            vt = now() + make_interval(secs => lease_s),
            read_ct = m.read_ct + 1,
            lease = gen_random_uuid(),
            lease_counted = true
        FROM chosen
        WHERE m.msg_id = chosen.msg_id
          AND m.state = 'ready'  -- rechecked on the newest row version: never two leases
        RETURNING m AS message
    )
    SELECT array_agg(leased.message) INTO claimed FROM leased;

    UPDATE fair_keys AS k
    SET vtime = k.vtime + taken.n / k.weight,
        inflight = k.inflight + taken.n,
        head_priority = (
            SELECT r.priority
            FROM messages AS r
            WHERE r.queue = for_queue
              AND coalesce(r.key, '') = k.key
              AND r.state = 'ready'
            ORDER BY r.priority DESC, r.msg_id
            LIMIT 1
        )
    FROM (
        SELECT s.key, count(c.msg_id) AS n
        FROM unnest(served) AS s (key)
        LEFT JOIN unnest(claimed) AS c ON coalesce(c.key, '') = s.key
        GROUP BY s.key
    ) AS taken
    WHERE k.queue = for_queue
      AND k.key = taken.key;

    RETURN QUERY SELECT * FROM unnest(claimed);
END
$$;
