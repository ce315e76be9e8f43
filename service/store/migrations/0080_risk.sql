-- The at-risk rules as time passes (domain/risk.py, projections/risk_queries.py,
-- service/risk/): the relationship summaries hold what the rules need, so that
-- one evaluation pass is one indexed query per rule, never a scan per
-- relationship.
ALTER TABLE relationship_summaries
    ADD COLUMN phase_entered_position bigint,            -- the event that entered the phase
    ADD COLUMN meeting_clock_at       timestamptz,       -- latest of last meeting, establishment, resumption
    ADD COLUMN meeting_clock_position bigint,            -- the event that set it
    ADD COLUMN action_item_positions  jsonb NOT NULL DEFAULT '{}',  -- {open item id: position}
    ADD COLUMN open_concerns          jsonb NOT NULL DEFAULT '{}',  -- {id: {severity, raised_at, position}}
    ADD COLUMN paused_position        bigint,            -- the relationship.paused event
    ADD COLUMN expected_resume        date,
    ADD COLUMN risk_codes             text[] NOT NULL DEFAULT '{}';  -- last recorded by risk.flagged/cleared

-- One index per rule, each partial on the rows the rule can newly hold for:
-- those whose last recorded codes (risk_codes) lack it. A pass asks each rule
-- for those rows past its cut-off, so in the steady state (most relationships
-- at risk already flagged) each query reads a handful of index entries.
CREATE INDEX relationship_summaries_risk_meeting
    ON relationship_summaries (cadence, meeting_clock_at)
    WHERE phase = 'cultivation' AND NOT paused
      AND NOT ('no_recent_meeting' = ANY(risk_codes));
CREATE INDEX relationship_summaries_risk_first_meeting
    ON relationship_summaries (meeting_clock_at)
    WHERE phase = 'cultivation' AND NOT paused AND meetings_since_established = 0
      AND NOT ('no_first_meeting' = ANY(risk_codes));
CREATE INDEX relationship_summaries_risk_overdue
    ON relationship_summaries (earliest_open_due)
    WHERE phase <> 'concluded' AND NOT ('overdue_action_items' = ANY(risk_codes));
CREATE INDEX relationship_summaries_risk_concern
    ON relationship_summaries (relationship_id)
    WHERE phase <> 'concluded' AND open_high_concerns > 0
      AND NOT ('open_high_concern' = ANY(risk_codes));
CREATE INDEX relationship_summaries_risk_paused
    ON relationship_summaries (paused_since)
    WHERE paused AND phase <> 'concluded' AND NOT ('paused_too_long' = ANY(risk_codes));
CREATE INDEX relationship_summaries_risk_stalled
    ON relationship_summaries (phase, phase_entered_at)
    WHERE NOT ('phase_stalled' = ANY(risk_codes));
-- The relationships flagged before (whose recorded codes may no longer hold).
CREATE INDEX relationship_summaries_risk_flagged
    ON relationship_summaries (relationship_id)
    WHERE cardinality(risk_codes) > 0 AND phase <> 'concluded';

-- The new columns (and concerns now open until resolved, not until the phase
-- changes) come from events already recorded: the summaries are projected
-- again from position 0 (every generation's checkpoint dropped).
TRUNCATE relationship_summaries;
DELETE FROM tracking WHERE name LIKE 'projection.relationship\_summary.%';
