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
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
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
-- Everything is set-based (subscripting array parameters in a loop is
-- quadratic in PL/pgSQL), and every lookup is a LATERAL index probe (LIMIT keeps the planner from
-- flattening it into a join that scans the table), so the
-- cost of a batch does not grow with the size of the tables.
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
-- Custom plans would re-plan every statement on every call (milliseconds);
-- the generic plans are all index probes and fit every batch.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    next_position bigint;
    assigned      bigint := 0;
    now_ts        timestamptz;
    accepted      int[] := '{}';
    d             record;
BEGIN
    SELECT p.last_position INTO next_position FROM event_position p
     WHERE p.singleton FOR UPDATE;
    now_ts := clock_timestamp();

    FOR d IN
        WITH ev AS (
            SELECT * FROM unnest(e_req, e_stream, e_version, e_id)
                AS t(req, stream, version, id)
        ), runs AS (
            SELECT ev.req, ev.stream, min(ev.version) AS first_version,
                   max(ev.version) AS last_version, count(*) AS n,
                   count(DISTINCT ev.version) AS n_distinct
              FROM ev GROUP BY ev.req, ev.stream
        ), bad AS (
            SELECT DISTINCT ON (r.req) r.req, r.stream, cur.version AS current_version
              FROM runs r
              LEFT JOIN LATERAL (
                  SELECT e.version FROM events e WHERE e.stream_id = r.stream
                   ORDER BY e.version DESC LIMIT 1) cur ON true
             WHERE r.n <> r.n_distinct
                OR r.last_version - r.first_version + 1 <> r.n
                OR (cur.version IS NOT NULL AND r.first_version <> cur.version + 1)
             ORDER BY r.req
        ), known AS (
            SELECT ev.req, min(e.position) AS first_pos, max(e.position) AS last_pos,
                   min(e.recorded_at) AS at
              FROM ev CROSS JOIN LATERAL (
                  SELECT e.position, e.recorded_at FROM events e WHERE e.event_id = ev.id LIMIT 1) e
             GROUP BY ev.req
        )
        SELECT q.req, q.n_events, q.idem_key, q.fingerprint, q.track_name, q.track_pos,
               k.key IS NOT NULL AS key_known, k.fingerprint AS known_fingerprint,
               k.first_position AS key_first, k.last_position AS key_last,
               kn.first_pos, kn.last_pos, kn.at, b.stream AS bad_stream,
               b.current_version AS bad_version
          FROM unnest(r_count, r_idem_key, r_fingerprint, r_track_name, r_track_position)
               WITH ORDINALITY AS q(n_events, idem_key, fingerprint, track_name, track_pos, req)
          LEFT JOIN LATERAL (
              SELECT k.key, k.fingerprint, k.first_position, k.last_position
                FROM idempotency_keys k WHERE k.key = q.idem_key LIMIT 1) k ON true
          LEFT JOIN known kn ON kn.req = q.req
          LEFT JOIN bad b ON b.req = q.req
         ORDER BY q.req
    LOOP
        req := d.req; conflict_stream := NULL; current_version := NULL;
        first_position := NULL; last_position := NULL; recorded_at := now_ts;

        IF d.key_known AND d.known_fingerprint <> d.fingerprint THEN
            status := 'idempotency_conflict';
        ELSIF d.key_known THEN
            -- A repeated idempotency key returns the original result.
            status := 'replayed';
            first_position := d.key_first; last_position := d.key_last;
            SELECT coalesce(min(e.recorded_at), now_ts) INTO recorded_at
              FROM events e WHERE e.position = d.key_first;
        ELSIF d.idem_key IS NULL AND d.first_pos IS NOT NULL THEN
            -- A retry of an append that did commit (same event ids).
            status := 'replayed';
            first_position := d.first_pos; last_position := d.last_pos;
            recorded_at := d.at;
        ELSIF d.bad_stream IS NOT NULL THEN
            status := 'version_conflict';
            conflict_stream := d.bad_stream; current_version := d.bad_version;
        ELSIF d.track_name IS NOT NULL AND NOT mf_advance_tracking(d.track_name, d.track_pos) THEN
            status := 'tracking_conflict';
        ELSE
            status := 'ok';
            accepted := accepted || d.req;
            IF d.n_events > 0 THEN
                first_position := next_position + assigned + 1;
                last_position := next_position + assigned + d.n_events;
                assigned := assigned + d.n_events;
            END IF;
            IF d.idem_key IS NOT NULL THEN
                INSERT INTO idempotency_keys (key, fingerprint, first_position, last_position)
                     VALUES (d.idem_key, d.fingerprint, first_position, last_position);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;

    IF assigned > 0 THEN
        INSERT INTO events (position, stream_id, version, event_id, topic, payload,
                            metadata, recorded_at, chain_hash)
        SELECT s.pos, s.stream, s.version, s.id, s.topic, s.payload, s.meta, now_ts,
               mf_chain(s.prev, mf_canonical(s.pos, s.stream, s.version, s.id, s.topic,
                                             s.payload, s.meta, now_ts))
                   OVER (PARTITION BY s.stream ORDER BY s.version ROWS UNBOUNDED PRECEDING)
          FROM (
              SELECT next_position + row_number() OVER (ORDER BY t.ord) AS pos,
                     t.stream, t.version, t.id, t.topic, t.payload, t.meta::jsonb AS meta,
                     coalesce(cur.chain_hash, '\x'::bytea) AS prev
                FROM unnest(e_req, e_stream, e_version, e_id, e_topic, e_payload, e_metadata)
                     WITH ORDINALITY AS t(req, stream, version, id, topic, payload, meta, ord)
                LEFT JOIN LATERAL (
                    SELECT e.chain_hash FROM events e WHERE e.stream_id = t.stream
                     ORDER BY e.version DESC LIMIT 1) cur ON true
               WHERE t.req = ANY (accepted)
          ) s;
        UPDATE event_position SET last_position = next_position + assigned WHERE singleton;
        PERFORM pg_notify(channel, (next_position + assigned)::text);
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
