-- Why: an ack of an ordinary queue paid for fair claiming. A BEFORE DELETE row trigger
-- makes PostgreSQL lock each row before it can read the trigger's WHEN clause, so every
-- acked row wrote a tuple-lock WAL record ahead of its DELETE, whatever its queue (seen
-- with pg_walinspect). An AFTER trigger reads WHEN from the deleted row without locking
-- it. The function only lowers the key's counter in fair_keys, which needs nothing from
-- before the delete, and it runs in the same statement and transaction as before.
--
-- The BEFORE UPDATE trigger stays: it clears the row's lease_counted in the new row
-- version, which only a BEFORE trigger can; an update (claim, requeue) locks the row
-- anyway.

DROP TRIGGER messages_fair_lease_ended_delete ON messages;

CREATE TRIGGER messages_fair_lease_ended_delete
    AFTER DELETE ON messages
    FOR EACH ROW
    WHEN (OLD.lease_counted AND OLD.state = 'leased')
    EXECUTE FUNCTION fair_lease_ended();
