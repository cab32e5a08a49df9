-- Operators: listing, replay, retry, bulk retry, audit, retention.

-- A replay adds new deliveries for the same routes; the earlier ones stay for audit, marked
-- superseded, and no longer count in the event's status.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_target_key;
ALTER TABLE webhook_deliveries ADD COLUMN superseded boolean NOT NULL DEFAULT false;
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

-- Keyset listing (newest first) for every filter the admin API offers.
CREATE INDEX webhook_events_provider_received_idx
    ON webhook_events (provider, received_at DESC, id DESC);
CREATE INDEX webhook_events_type_received_idx
    ON webhook_events (event_type, received_at DESC, id DESC);
CREATE INDEX webhook_deliveries_created_idx
    ON webhook_deliveries (created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_status_created_idx
    ON webhook_deliveries (status, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_target_created_idx
    ON webhook_deliveries (target_service, created_at DESC, id DESC);

-- The roll-up ignores superseded deliveries.
CREATE OR REPLACE FUNCTION mimic_finish_delivery(p_id uuid, p_status text, p_result jsonb,
                                                 p_error text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_event uuid;
BEGIN
    UPDATE webhook_deliveries
       SET status = p_status, result = p_result, last_error = coalesce(p_error, last_error),
           attempt_open = false, updated_at = now(),
           completed_at = CASE WHEN p_status IN ('success', 'failed') THEN now() END
     WHERE id = p_id AND status <> 'success'
    RETURNING event_id INTO v_event;
    IF v_event IS NULL OR p_status = 'dispatched' THEN
        RETURN v_event;
    END IF;
    PERFORM mimic_roll_up_event(v_event);
    RETURN v_event;
END
$$;

-- An event's status from its current (not superseded) deliveries, under the event's lock.
CREATE FUNCTION mimic_roll_up_event(p_event uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhook_events WHERE id = p_event FOR UPDATE;
    WITH d AS (
        SELECT count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status <> 'success') AS unfinished,
               coalesce(sum(greatest(attempt_count - 1, 0)), 0) AS retries,
               string_agg(target_service || ': ' || last_error, '; ')
                   FILTER (WHERE status = 'failed') AS errors
          FROM webhook_deliveries
         WHERE event_id = p_event AND NOT superseded
    )
    UPDATE webhook_events e
       SET status = CASE WHEN d.failed > 0 THEN 'failed'
                         WHEN d.unfinished = 0 THEN 'delivered'
                         ELSE 'received' END,
           processed_at = CASE WHEN d.failed > 0 OR d.unfinished = 0 THEN now() END,
           error_message = d.errors,
           retry_count = d.retries
      FROM d
     WHERE e.id = p_event;
END
$$;

-- Who did what: one row per admin action. A key is named by its id, never its value.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    key_id text NOT NULL,
    action text NOT NULL,
    target_ids text[] NOT NULL,
    outcome text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);

-- A bulk retry runs as a job in batches; its progress is read back by id.
CREATE TABLE bulk_retries (
    id uuid PRIMARY KEY,
    filters jsonb NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done')),
    total integer NOT NULL DEFAULT 0,
    retried integer NOT NULL DEFAULT 0,
    key_id text NOT NULL,
    job_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Listing notifications by recipient, newest first, without sorting every match.
CREATE TABLE notification_recipients (
    address text NOT NULL,
    created_at timestamptz NOT NULL,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    PRIMARY KEY (address, created_at, notification_id)
);
INSERT INTO notification_recipients (address, created_at, notification_id)
SELECT DISTINCT r.address, n.created_at, n.id FROM notifications n, unnest(n."to") AS r(address);
DROP INDEX notifications_to_idx;
CREATE INDEX notifications_tenant_status_created_idx
    ON notifications (tenant_id, status, created_at DESC, id DESC);

-- Rendered bodies (they hold live links) are purged after EMAIL_BODY_RETENTION_DAYS.
ALTER TABLE notifications ADD COLUMN body_purged_at timestamptz;
