-- Two things the projection runner now keeps per projection:
--
-- * the generation a rebuild builds beside the serving tables (blue/green):
--   `generation` stays the one that serves; a rebuild takes a new number from
--   `last_generation` (never reused, so the checkpoint of an abandoned
--   rebuild, 'projection.<name>.<g>', can never be mistaken for a new one's),
--   builds its tables in a schema of its own, and swaps them in together with
--   `generation` in one transaction once it has caught up with the log;
--
-- * the event the projection is stuck at: when a handler fails on an event,
--   the worker records its position and error here, so /readyz and /metrics
--   of every process (the worker may run in another one) can name it. The
--   columns are cleared when the projection commits that position (or a
--   rebuild swaps in tables that hold it).
ALTER TABLE projection_state
    ADD COLUMN last_generation integer CHECK (last_generation > 0),
    ADD COLUMN failed_position bigint,
    ADD COLUMN failed_error    text,
    ADD COLUMN failed_at       timestamptz;
