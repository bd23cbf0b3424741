-- Why: per-queue settings that the claim itself must honour (dead letters, pause), and a
-- wake-up signal for waiting claimers (`pgq claim --wait`).
--
-- A queue needs no row here to exist: queues are a column of messages. A row appears only
-- when someone configures or pauses a queue, so send stays one INSERT into one table.

CREATE TABLE queues (
    queue                 text        PRIMARY KEY,
    -- A message delivered this many times that comes back (lease expiry or requeue) goes
    -- to state 'dead' instead of 'ready': it is never handed out more often. NULL: no limit.
    max_deliveries        integer,
    -- The whole queue yields nothing to claim.
    paused                boolean     NOT NULL DEFAULT false,
    -- Priorities below this yield nothing to claim (a paused band); NULL: none paused.
    paused_below_priority smallint,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_queue_name CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    CONSTRAINT queues_max_deliveries_positive CHECK (max_deliveries > 0),
    CONSTRAINT queues_paused_below_priority_range CHECK (paused_below_priority BETWEEN 1 AND 10)
);

-- Dead letters by queue and by when they died (vt of a dead row is the moment it died):
-- `peek --state dead` and `requeue --dead --older-than` probe this instead of the table.
-- Dead rows are few, so the index is small.
CREATE INDEX messages_dead_idx
    ON messages (queue, vt)
    WHERE state = 'dead';

-- Wake-ups for `claim --wait`. Channel: 'pgq_ready:<schema>' (so two pgq schemas in one
-- database do not wake each other); payload: the queue name.
--
-- Inserts notify once per statement and queue, from a transition table: a COPY of 100k
-- rows sends one notification, not 100k. Updates notify per row, but only for rows that
-- become ready (requeue, redrive, expired leases returned): the trigger's WHEN clause is
-- checked without calling a function, so the claim's ready -> leased update pays nothing
-- for it, and PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION notify_ready_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgq_ready:' || TG_TABLE_SCHEMA, q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'ready') AS q;
    RETURN NULL;
END
$$;

CREATE FUNCTION notify_ready_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgq_ready:' || TG_TABLE_SCHEMA, NEW.queue);
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_notify_inserted
    AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION notify_ready_inserted();

CREATE TRIGGER messages_notify_became_ready
    AFTER UPDATE OF state ON messages
    FOR EACH ROW
    WHEN (NEW.state = 'ready' AND OLD.state <> 'ready')
    EXECUTE FUNCTION notify_ready_updated();
