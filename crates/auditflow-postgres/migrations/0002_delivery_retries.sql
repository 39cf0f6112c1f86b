-- The retry outbox: a transiently failed delivery is recorded 'retrying'
-- with the time notify tries again (or, while a replica holds it, the end of
-- that replica's lease). The partial index holds only the retrying rows, so
-- claiming due retries costs the size of the backlog, not of the history.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_status_check CHECK (status IN ('delivered', 'failed', 'retrying'));
ALTER TABLE deliveries ADD COLUMN next_attempt_at timestamptz;
CREATE INDEX deliveries_retry_due ON deliveries (channel, next_attempt_at)
    WHERE status = 'retrying';
