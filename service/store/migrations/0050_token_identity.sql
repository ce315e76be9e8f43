-- Tokens have identities (an id, a unique name, optionally a list of programs),
-- relationships have a program that scoping can read without the payload, and
-- stored idempotent responses are keyed by token id, sealed and expiring.

-- Existing token rows keep working: the new columns are empty (no program
-- limit, never used), and names that do not follow the new rule stay as they
-- are (the rule is checked when a token is created). Only a stored token that
-- took the bootstrap token's reserved name is renamed (it keeps its id, role
-- and secret; events it recorded keep the source they had).
ALTER TABLE api_tokens ADD COLUMN program_ids text[];
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN seq bigserial;  -- paging key, in creation order
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_seq UNIQUE (seq);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_programs_listed
    CHECK (program_ids IS NULL OR cardinality(program_ids) > 0);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_admin_sees_all
    CHECK (role <> 'admin' OR program_ids IS NULL);
UPDATE api_tokens SET name = 'renamed.bootstrap-admin.' || left(id::text, 8)
 WHERE name = 'bootstrap-admin';

-- The program of every relationship (NULL: opened without one), written by the
-- repository before the opening event is appended, so every stored stream has
-- its row (a row whose append then failed names a stream that never exists:
-- stream ids are random, never reused). The event log has no program column and
-- its payloads may be encrypted, so scoping reads this table.
CREATE TABLE relationship_programs (
    stream_id  uuid PRIMARY KEY,
    program_id text
);
CREATE INDEX relationship_programs_by_program ON relationship_programs (program_id, stream_id);
-- Relationships opened before this release: from the summaries read model
-- (any it has not projected yet are derived from their opening event on first use).
INSERT INTO relationship_programs (stream_id, program_id)
SELECT relationship_id, program_id FROM relationship_summaries
ON CONFLICT (stream_id) DO NOTHING;

-- Stored responses were keyed by token name and held bodies in clear: they are
-- dropped (they expire within a day anyway) and the table is keyed by token id.
-- `body` is the response's JSON, AES-GCM-sealed when a cipher key is set.
DROP TABLE idempotent_responses;
CREATE TABLE idempotent_responses (
    token_id    uuid        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    status      int         NOT NULL,
    body        text        NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
CREATE INDEX idempotent_responses_by_age ON idempotent_responses (created_at);
