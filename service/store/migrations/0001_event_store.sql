-- The event store: one events table, a single-row position counter, idempotency
-- keys and tracking records (projection checkpoints).
--
-- Positions are handed out by locking the one row of event_position until the
-- appending transaction commits. A writer therefore commits before the next one
-- can take a position, so readers of the global log see positions appear
-- contiguously and in commit order: an event can never commit "late" below a
-- position a reader has already passed.

CREATE TABLE event_position (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position bigint  NOT NULL
);
INSERT INTO event_position (singleton, last_position) VALUES (true, 0);

CREATE TABLE events (
    position    bigint      PRIMARY KEY,
    stream_id   uuid        NOT NULL,
    version     bigint      NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL,
    chain_hash  bytea       NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);

CREATE TABLE idempotency_keys (
    key            text        PRIMARY KEY,
    fingerprint    bytea       NOT NULL,
    first_position bigint,
    last_position  bigint,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tracking (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What the hash chain covers: every stored column but the chain itself. Kept in
-- one SQL function so appends and verification can never disagree about it.
CREATE FUNCTION mf_canonical(
    p_position bigint, p_stream_id uuid, p_version bigint, p_event_id uuid,
    p_topic text, p_payload bytea, p_metadata jsonb, p_recorded_at timestamptz
) RETURNS bytea
-- STABLE, like the casts it uses, so the planner can inline it into queries.
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(
               concat_ws(chr(31),
                   p_position::text, p_stream_id::text, p_version::text,
                   p_event_id::text, p_topic, p_metadata::text,
                   (extract(epoch FROM p_recorded_at) * 1000000)::bigint::text),
               'UTF8')
           || '\x1f'::bytea || p_payload
$$;

-- The chain step h_n = sha256(h_{n-1} || canonical_n), as a running aggregate,
-- so a whole batch is chained in one set-based INSERT. `prev` seeds the chain
-- with the stream's last stored hash (empty for a new stream).
-- (PL/pgSQL, not SQL: an SQL transition function is never inlined and costs
-- a full executor start per row.)
CREATE FUNCTION mf_chain_step(state bytea, prev bytea, canonical bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN sha256(coalesce(state, prev) || canonical);
END
$$;
CREATE AGGREGATE mf_chain(bytea, bytea) (SFUNC = mf_chain_step, STYPE = bytea);

-- Appends a batch of independent requests in one transaction (group commit).
-- Each request is decided on its own against the state before the batch: a
-- version conflict, a reused idempotency key or a checkpoint that does not move
-- forward fails only that request. The caller puts each stream, idempotency key
-- and tracking name in at most one request of a batch, and lays out each
-- request's events contiguously, every stream's run in version order.
--
-- Two statements: the first takes the position lock (so the second's snapshot
-- sees every earlier append), the second decides and writes the whole batch
-- set-based. Every lookup is a LATERAL index probe (LIMIT keeps the planner
-- from flattening it into a join that scans the table), so the cost of a batch
-- does not grow with the size of the tables.
CREATE FUNCTION mf_append(
    r_count int[], r_idem_key text[], r_fingerprint bytea[],
    r_track_name text[], r_track_position bigint[],
    e_req int[], e_stream uuid[], e_version bigint[], e_id uuid[], e_topic text[],
    e_payload bytea[], e_metadata text[], channel text
) RETURNS TABLE (
    req int, status text, conflict_stream uuid, current_version bigint,
    first_position bigint, last_position bigint, recorded_at timestamptz
)
LANGUAGE plpgsql
-- Custom plans would re-plan the big statement on every call (milliseconds);
-- its generic plan is all index probes and fits every batch.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    before_position bigint;
    after_position  bigint;
    now_ts          timestamptz;
BEGIN
    SELECT p.last_position INTO before_position FROM event_position p
     WHERE p.singleton FOR UPDATE;
    now_ts := clock_timestamp();

    RETURN QUERY
    WITH ev AS (
        SELECT * FROM unnest(e_req, e_stream, e_version, e_id, e_topic, e_payload, e_metadata)
            WITH ORDINALITY AS t(req, stream, version, id, topic, payload, meta, ord)
    ), runs AS (
        -- Each request's run of events per stream, with that stream's head now.
        SELECT r.*, cur.version AS current_version, cur.chain_hash AS head_hash
          FROM (SELECT ev.req, ev.stream, min(ev.version) AS first_version,
                       max(ev.version) AS last_version, count(*) AS n,
                       count(DISTINCT ev.version) AS n_distinct
                  FROM ev GROUP BY ev.req, ev.stream) r
          LEFT JOIN LATERAL (
              SELECT e.version, e.chain_hash FROM events e WHERE e.stream_id = r.stream
               ORDER BY e.version DESC LIMIT 1) cur ON true
    ), bad AS (
        -- The first stream of each request whose run does not continue it.
        SELECT DISTINCT ON (r.req) r.req, r.stream, r.current_version
          FROM runs r
         WHERE r.n <> r.n_distinct
            OR r.last_version - r.first_version + 1 <> r.n
            OR (r.current_version IS NOT NULL AND r.first_version <> r.current_version + 1)
         ORDER BY r.req
    ), known AS (
        -- Requests whose every event is already stored exactly as asked: a
        -- retry of an append that did commit. Such a retry always fails the
        -- version check, so only those requests are probed.
        SELECT ev.req, min(e.position) AS first_pos, max(e.position) AS last_pos
          FROM ev JOIN bad b ON b.req = ev.req
         CROSS JOIN LATERAL (
              SELECT e.position FROM events e
               WHERE e.event_id = ev.id AND e.stream_id = ev.stream
                 AND e.version = ev.version LIMIT 1) e
         GROUP BY ev.req
        HAVING count(*) = r_count[ev.req]
    ), decided AS (
        SELECT q.req, q.n_events, q.idem_key, q.fingerprint, q.track_name, q.track_pos,
               b.stream AS bad_stream, b.current_version AS bad_version,
               coalesce(k.first_position, kn.first_pos) AS known_first,
               coalesce(k.last_position, kn.last_pos) AS known_last,
               CASE WHEN k.key IS NOT NULL AND k.fingerprint <> q.fingerprint
                        THEN 'idempotency_conflict'
                    WHEN k.key IS NOT NULL THEN 'replayed'
                    WHEN q.idem_key IS NULL AND kn.first_pos IS NOT NULL THEN 'replayed'
                    WHEN b.stream IS NOT NULL THEN 'version_conflict'
                    ELSE 'ok' END AS verdict
          FROM unnest(r_count, r_idem_key, r_fingerprint, r_track_name, r_track_position)
               WITH ORDINALITY AS q(n_events, idem_key, fingerprint, track_name, track_pos, req)
          LEFT JOIN LATERAL (
              SELECT k.key, k.fingerprint, k.first_position, k.last_position
                FROM idempotency_keys k WHERE k.key = q.idem_key LIMIT 1) k ON true
          LEFT JOIN known kn ON kn.req = q.req
          LEFT JOIN bad b ON b.req = q.req
    ), moved AS (
        -- Checkpoints only move forward.
        INSERT INTO tracking AS t (name, position, updated_at)
        SELECT d.track_name, d.track_pos, now_ts FROM decided d
         WHERE d.verdict = 'ok' AND d.track_name IS NOT NULL
        ON CONFLICT (name) DO UPDATE
           SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
         WHERE t.position < EXCLUDED.position
        RETURNING t.name
    ), placed AS (
        -- Accepted requests take consecutive positions, in request order.
        SELECT f.*, before_position + sum(CASE WHEN f.outcome = 'ok' THEN f.n_events ELSE 0 END)
                        OVER (ORDER BY f.req) AS end_pos
          FROM (SELECT d.*,
                       CASE WHEN d.verdict = 'ok' AND d.track_name IS NOT NULL
                             AND d.track_name NOT IN (SELECT m.name FROM moved m)
                            THEN 'tracking_conflict' ELSE d.verdict END AS outcome
                  FROM decided d) f
    ), new_events AS (
        INSERT INTO events (position, stream_id, version, event_id, topic, payload,
                            metadata, recorded_at, chain_hash)
        SELECT s.pos, s.stream, s.version, s.id, s.topic, s.payload, s.meta, now_ts,
               mf_chain(s.prev, mf_canonical(s.pos, s.stream, s.version, s.id, s.topic,
                                             s.payload, s.meta, now_ts))
                   OVER (PARTITION BY s.stream ORDER BY s.version ROWS UNBOUNDED PRECEDING)
          FROM (
              SELECT p.end_pos - p.n_events + row_number() OVER (PARTITION BY ev.req ORDER BY ev.ord)
                         AS pos,
                     ev.stream, ev.version, ev.id, ev.topic, ev.payload, ev.meta::jsonb AS meta,
                     coalesce(r.head_hash, '\x'::bytea) AS prev
                FROM ev JOIN placed p ON p.req = ev.req AND p.outcome = 'ok'
                JOIN runs r ON r.req = ev.req AND r.stream = ev.stream
          ) s
    ), new_keys AS (
        INSERT INTO idempotency_keys (key, fingerprint, first_position, last_position)
        SELECT p.idem_key, p.fingerprint,
               CASE WHEN p.n_events > 0 THEN p.end_pos - p.n_events + 1 END,
               CASE WHEN p.n_events > 0 THEN p.end_pos END
          FROM placed p WHERE p.outcome = 'ok' AND p.idem_key IS NOT NULL
    ), bump AS (
        UPDATE event_position SET last_position = (SELECT max(p.end_pos) FROM placed p)
         WHERE singleton AND (SELECT max(p.end_pos) FROM placed p) > before_position
    )
    SELECT p.req::int, p.outcome, p.bad_stream, p.bad_version,
           CASE WHEN p.outcome = 'replayed' THEN p.known_first
                WHEN p.outcome = 'ok' AND p.n_events > 0 THEN p.end_pos - p.n_events + 1 END,
           CASE WHEN p.outcome = 'replayed' THEN p.known_last
                WHEN p.outcome = 'ok' AND p.n_events > 0 THEN p.end_pos END,
           CASE WHEN p.outcome = 'replayed' THEN coalesce(
                    (SELECT e.recorded_at FROM events e WHERE e.position = p.known_first), now_ts)
                ELSE now_ts END
      FROM placed p ORDER BY p.req;

    SELECT p.last_position INTO after_position FROM event_position p WHERE p.singleton;
    IF after_position > before_position THEN
        PERFORM pg_notify(channel, after_position::text);
    END IF;
END
$$;

-- Moves a checkpoint forward; false when it is already at or past `p_position`.
CREATE FUNCTION mf_advance_tracking(p_name text, p_position bigint) RETURNS boolean
LANGUAGE sql AS $$
    WITH moved AS (
        INSERT INTO tracking AS t (name, position, updated_at)
             VALUES (p_name, p_position, clock_timestamp())
        ON CONFLICT (name) DO UPDATE
             SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
           WHERE t.position < EXCLUDED.position
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM moved)
$$;
