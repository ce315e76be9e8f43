-- Read model "phase_statistics" (projections/phase_stats.py): for
-- GET /v1/stats/phases. One row per relationship (current phase, outcome) and
-- one per stay in a phase (a refinement leads back to establishment, so a
-- relationship can stay in a phase more than once). Time in phase is measured
-- on completed stays, from the envelopes' occurred_at.
CREATE TABLE phase_stats_relationships (
    relationship_id uuid        PRIMARY KEY,
    phase           text        NOT NULL,
    paused          boolean     NOT NULL,
    outcome         text
);
CREATE TABLE phase_stats_stays (
    relationship_id  uuid        NOT NULL,
    entered_position bigint      NOT NULL,
    phase            text        NOT NULL,
    entered_at       timestamptz NOT NULL,
    left_at          timestamptz,
    PRIMARY KEY (relationship_id, entered_position)
);
CREATE INDEX phase_stats_stays_open ON phase_stats_stays (relationship_id) WHERE left_at IS NULL;
