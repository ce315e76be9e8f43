-- Per-relationship data keys for crypto-shredding (docs/erasure.md).
--
-- Erasable fields of an event are stored encrypted (AES-GCM) under its
-- relationship's data key; the key is kept here wrapped (AES-GCM) by
-- MENTORFLOW_CIPHER_KEY. Erasing a relationship destroys its wrapped key:
-- the ciphertext in the events stays byte for byte (the hash chains and the
-- Merkle tree cover it) but can never be read again. The row stays as a
-- tombstone (wrapped_key NULL, erased_at set), so no new key is ever made.
CREATE TABLE data_keys (
    stream_id   uuid        PRIMARY KEY,
    wrapped_key bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz,
    CONSTRAINT data_keys_erased_or_kept CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

-- Stored idempotent responses name the relationship they answered for, so an
-- erasure can delete those that may quote its personal data.
ALTER TABLE idempotent_responses ADD COLUMN relationship_id uuid;
CREATE INDEX idempotent_responses_by_relationship ON idempotent_responses (relationship_id)
    WHERE relationship_id IS NOT NULL;

-- Erasure is the append of a `personal_data.erased` event: in the same
-- transaction, this trigger destroys the relationship's data key and deletes
-- the copies that could quote its personal data outside the events (snapshots,
-- stored idempotent responses). Either all of it commits or none: a crash can
-- never leave the event recorded with the key still readable, or the reverse.
CREATE FUNCTION mf_erase_personal_data() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO data_keys (stream_id, wrapped_key, erased_at)
    VALUES (NEW.stream_id, NULL, now())
    ON CONFLICT (stream_id) DO UPDATE
        SET wrapped_key = NULL, erased_at = coalesce(data_keys.erased_at, now());
    DELETE FROM snapshots WHERE stream_id = NEW.stream_id;
    DELETE FROM idempotent_responses WHERE relationship_id = NEW.stream_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_personal_data_erased
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.metadata ->> 'type' = 'personal_data.erased')
    EXECUTE FUNCTION mf_erase_personal_data();
