-- Webhook endpoints (managed by admins over the API), the outbox of messages
-- to deliver (written by the webhook outbox projection), and one row per
-- delivery attempt (the delivery log).

CREATE TABLE webhook_endpoints (
    id                   uuid        PRIMARY KEY,
    url                  text        NOT NULL,
    event_types          text[]      NOT NULL,
    description          text,
    enabled              boolean     NOT NULL DEFAULT true,
    disabled_reason      text,
    secret               text        NOT NULL,
    previous_secret      text,
    previous_expires_at  timestamptz,
    created_position     bigint      NOT NULL,
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);

CREATE TABLE webhook_messages (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    position         bigint      NOT NULL,
    relationship_id  uuid        NOT NULL,
    webhook_type     text        NOT NULL,
    body             jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_status      int,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    failed_at        timestamptz,
    CONSTRAINT webhook_messages_once UNIQUE (endpoint_id, position, webhook_type)
);
-- What a dispatcher looks for: pending messages that are due.
CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at)
    WHERE state = 'pending';
-- Per-relationship order: the earliest pending message of a pair goes first.
CREATE INDEX webhook_messages_order ON webhook_messages (endpoint_id, relationship_id, position)
    WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id             bigserial   PRIMARY KEY,
    message_id     uuid        NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id    uuid        NOT NULL,
    attempt        int         NOT NULL,
    attempted_at   timestamptz NOT NULL,
    status         int,
    latency_ms     double precision NOT NULL,
    error          text,
    next_retry_at  timestamptz
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
