-- Signed checkpoints of the global log's Merkle tree (C2SP tlog-checkpoint
-- notes). Each row keeps the note exactly as signed, with the key name and
-- public key that signed it, so old checkpoints still verify after the key
-- changes. The private key is never stored here.

CREATE TABLE checkpoints (
    tree_size   bigint      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash   bytea       NOT NULL CHECK (length(root_hash) = 32),
    note        text        NOT NULL,
    key_name    text        NOT NULL,
    public_key  bytea       NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The log's identity: names the default checkpoint origin
-- (mentorflow.local/<log_id>), stable for the life of the database.
CREATE TABLE log_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    log_id    uuid    NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO log_identity (singleton) VALUES (true);
