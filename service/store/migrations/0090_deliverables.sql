-- An agreement's deliverables (agreement.proposed `deliverables`) and the
-- at-risk rule `overdue_deliverable` (domain/risk.py): a deliverable of the
-- latest agreement past its due date while in cultivation. The summaries
-- keep the latest agreement's deliverables and their earliest due date, and
-- one partial index answers the rule's query (projections/risk_queries.py).
ALTER TABLE relationship_summaries
    ADD COLUMN deliverables             jsonb NOT NULL DEFAULT '{}',  -- {deliverable id: due date or null}
    ADD COLUMN earliest_deliverable_due date,
    ADD COLUMN deliverables_position    bigint;             -- the agreement.proposed event

CREATE INDEX relationship_summaries_risk_deliverable
    ON relationship_summaries (earliest_deliverable_due)
    WHERE phase = 'cultivation' AND NOT ('overdue_deliverable' = ANY(risk_codes));

-- Agreements recorded before carry no deliverables, so the new columns'
-- defaults are already right for every existing row: nothing to project again.

-- Advocacy (advocacy.recorded) in the phase statistics: one row per event,
-- counted per kind, overall and per program (projections/phase_stats*.py).
-- No such event was recorded before this release: nothing to project again.
CREATE TABLE phase_stats_advocacy (
    relationship_id uuid   NOT NULL,
    position        bigint NOT NULL,
    kind            text   NOT NULL,
    PRIMARY KEY (relationship_id, position)
);
