-- Read model "timeline" (projections/timeline.py): one readable entry per
-- event, for GET /v1/relationships/{id}/timeline. `data` is the event's data
-- with its confidential fields replaced by "[redacted]" and `confidential`
-- names them: confidential text never leaves the event store, where it may be
-- encrypted at rest; roles that may read it get it decoded at query time.
CREATE TABLE timeline_entries (
    relationship_id uuid        NOT NULL,
    version         bigint      NOT NULL,
    position        bigint      NOT NULL UNIQUE,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           jsonb,
    source          text,
    correlation_id  text,
    causation_id    text,
    from_phase      text,
    to_phase        text,
    summary         text        NOT NULL,
    data            jsonb       NOT NULL,
    confidential    text[]      NOT NULL,
    PRIMARY KEY (relationship_id, version)
);
