-- Snapshots of aggregates, taken every N events, so loading any version costs
-- one snapshot plus fewer than N events. Derived data: the events stay the
-- truth (audits replay from them), and a snapshot can always be taken again.
CREATE TABLE snapshots (
    stream_id uuid        NOT NULL,
    version   bigint      NOT NULL,
    topic     text        NOT NULL,
    payload   bytea       NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);
