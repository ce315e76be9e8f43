-- The Merkle tree over the global log (RFC 9162 §2.1), stored as its perfect
-- subtrees: node (level, idx) is the hash of leaves [idx * 2^level,
-- (idx + 1) * 2^level); level 0 holds the leaf hashes, leaf p-1 being
-- SHA-256(0x00 || mf_canonical(event at position p)). A node is written once,
-- when its last leaf arrives, and never changes: any root or proof up to the
-- built size needs O(log² n) of them.
--
-- `merkle_tree.size` is how many leaves are built (the tree builder moves it
-- forward in the same transaction as the nodes it writes); roots and proofs
-- are served up to it.

CREATE TABLE merkle_nodes (
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE merkle_tree (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    size       bigint      NOT NULL CHECK (size >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO merkle_tree (singleton, size) VALUES (true, 0);
