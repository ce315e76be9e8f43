-- Read model "relationship_summary" (projections/summaries.py): one row per
-- relationship, for GET /v1/relationships (filters, cursor paging, at-risk).
-- It stores facts only; whether a relationship is at risk depends on "now"
-- and is computed by the query from these columns.
CREATE TABLE relationship_summaries (
    relationship_id            uuid        PRIMARY KEY,
    opened_position            bigint      NOT NULL UNIQUE,  -- paging key: stable, in opening order
    version                    bigint      NOT NULL,
    last_position              bigint      NOT NULL,
    mentee_id                  text        NOT NULL,
    mentee_name                text,
    program_id                 text,
    predecessor_id             uuid,
    mentor_id                  text,
    phase                      text        NOT NULL,
    paused                     boolean     NOT NULL,
    paused_since               timestamptz,
    resumed_at                 timestamptz,
    opened_at                  timestamptz NOT NULL,
    phase_entered_at           timestamptz NOT NULL,
    last_event_at              timestamptz NOT NULL,
    established_at             timestamptz,                -- latest entry into cultivation
    cadence                    text,                       -- latest agreement's frequency
    last_meeting_at            timestamptz,
    meetings_held              integer     NOT NULL,
    meetings_since_established integer     NOT NULL,
    open_action_items          jsonb       NOT NULL,       -- {item id: due date or null}
    earliest_open_due          date,
    concerns                   integer     NOT NULL,
    open_high_concerns         integer     NOT NULL,       -- high-severity, raised in this phase
    outcome                    text
);
CREATE INDEX relationship_summaries_phase ON relationship_summaries (phase, opened_position);
CREATE INDEX relationship_summaries_mentee ON relationship_summaries (mentee_id, opened_position);
CREATE INDEX relationship_summaries_mentor ON relationship_summaries (mentor_id, opened_position);
CREATE INDEX relationship_summaries_program ON relationship_summaries (program_id, opened_position);
