-- The relationships flagged before, ordered by the position of their row's
-- last event: a pass of the risk worker on news looks only at those whose row
-- changed since its previous pass (projections/risk_queries.py), a range of
-- this index; a complete pass reads it whole, as it read the index it replaces.
DROP INDEX IF EXISTS relationship_summaries_risk_flagged;
CREATE INDEX relationship_summaries_risk_flagged
    ON relationship_summaries (last_position)
    WHERE cardinality(risk_codes) > 0 AND phase <> 'concluded';
