-- The projection runner's own state: one row per projection with its current
-- generation. A rebuild bumps the generation and empties the projection's
-- tables in one transaction; the checkpoint of generation g is the tracking
-- record 'projection.<name>.<g>', so a new generation starts from position 0
-- without ever moving a checkpoint backwards. Every batch a worker commits
-- first reads its generation row FOR SHARE: a rebuild that committed in the
-- meantime makes the batch roll back (a fencing check), and a rebuild waits
-- for the batch in flight before it empties the tables.
CREATE TABLE projection_state (
    name       text        PRIMARY KEY,
    generation integer     NOT NULL DEFAULT 1 CHECK (generation > 0),
    rebuilt_at timestamptz
);
