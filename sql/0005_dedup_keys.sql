-- Why: idempotent send. A producer that retries after exit 69 (the connection went away,
-- e.g. in a failover) cannot know whether its first send committed; with a dedup key the
-- retry is a no-op that returns the first message's id.
--
-- The key is remembered here, not on the message, because it must outlive the message: a
-- retry that arrives after the first message was claimed and acked (deleted) must still
-- find it. Each record lives for its queue's dedup window (queues.dedup_window, NULL: the
-- default of 24 hours, a constant in the code); `pgq purge` of a queue deletes its records
-- older than that. A send without a key never touches this table (still one INSERT).
--
-- Additive only: a consumer of the previous release (claim/ack) never reads these.

CREATE TABLE dedup_keys (
    queue      text        NOT NULL,
    dedup_key  text        NOT NULL,
    -- The message the key first sent; it may be acked (gone) by now.
    msg_id     bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The unique index a racing sender's INSERT … ON CONFLICT waits on.
    PRIMARY KEY (queue, dedup_key),
    CONSTRAINT dedup_keys_queue_name CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    CONSTRAINT dedup_keys_key_length CHECK (octet_length(dedup_key) BETWEEN 1 AND 512)
);

-- Purge finds a queue's expired records by age.
CREATE INDEX dedup_keys_created_idx ON dedup_keys (queue, created_at);

-- How long a queue remembers a dedup key; NULL: the default (24 hours).
ALTER TABLE queues ADD COLUMN dedup_window interval;
ALTER TABLE queues ADD CONSTRAINT queues_dedup_window_positive
    CHECK (dedup_window > interval '0');
