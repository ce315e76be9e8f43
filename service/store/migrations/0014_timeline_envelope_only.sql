-- The timeline keeps each event's place and clear-text envelope only; the
-- sentence and the data are rendered from the decoded event when a page is
-- read (projections/timeline.py). Nothing of a payload is copied any more,
-- and a rebuild no longer decodes every event.
ALTER TABLE timeline_entries
    DROP COLUMN summary,
    DROP COLUMN data,
    DROP COLUMN confidential;

-- The primary key (relationship_id, version) already refuses an event
-- projected twice; a second unique index on position only slowed every insert.
ALTER TABLE timeline_entries DROP CONSTRAINT timeline_entries_position_key;
