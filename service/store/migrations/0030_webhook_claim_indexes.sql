-- Indexes for the dispatcher's claim, which works per endpoint and only
-- looks at pending rows (see service/webhooks/dispatcher.py, CLAIM_SQL).
--
-- Measured before: with a million outbox rows and no statistics yet, the old
-- claim planned a bitmap scan of 0020's webhook_messages_order by endpoint
-- alone. A partial index keeps the entries of rows that were pending until a
-- vacuum removes them, and a bitmap heap scan never marks them dead, so every
-- claim visited the heap page of every message delivered since the last
-- vacuum (seconds at 1M rows). The claim now reads these two indexes with
-- ordered, LIMITed index scans, which stop early and skip (and mark) dead
-- entries whatever the statistics say.

-- The due messages of one endpoint, in the order they are claimed.
CREATE INDEX webhook_messages_endpoint_due
    ON webhook_messages (endpoint_id, next_attempt_at, position)
    WHERE state = 'pending';

-- The first pending message of an (endpoint, relationship): the only one
-- that may be sent (per-relationship order). Replaces 0020's index, which
-- lacked webhook_type, the tie-breaker of two messages at one position.
CREATE INDEX webhook_messages_head
    ON webhook_messages (endpoint_id, relationship_id, position, webhook_type)
    WHERE state = 'pending';
DROP INDEX webhook_messages_order;

-- Every message is written pending and updated once it is delivered, so the
-- partial indexes above collect dead entries between vacuums (an index scan
-- marks them and skips their heap page, but still reads past them). So
-- vacuum and analyse this table after a fixed number of changes rather than
-- a fifth of its size (the default), which grows with the outbox, and always
-- clean its indexes (PostgreSQL may otherwise skip that when few heap pages
-- have dead rows, which is how delivered messages are spread).
ALTER TABLE webhook_messages SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 10000,
    vacuum_index_cleanup = on
);
