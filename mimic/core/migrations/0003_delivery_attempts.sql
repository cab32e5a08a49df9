-- Deliveries: an attempt in flight is marked, so the next attempt can record why it is a
-- retry (the worker was stopped, died, or lost the database mid-call); and an attempt's
-- outcome and its event's roll-up are written in one round trip.

ALTER TABLE webhook_deliveries ADD COLUMN attempt_open boolean NOT NULL DEFAULT false;

-- Record one attempt's outcome; when it is final, roll the event up from its deliveries.
-- Returns the event id, or NULL when the delivery had already succeeded (a success is
-- final: an overlapping attempt that ends later cannot overwrite it).
-- In READ COMMITTED each statement below takes a new snapshot, so the roll-up, which runs
-- after the event row is locked, sees every delivery committed before the lock was granted.
CREATE FUNCTION mimic_finish_delivery(p_id uuid, p_status text, p_result jsonb, p_error text)
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
    PERFORM 1 FROM webhook_events WHERE id = v_event FOR UPDATE;
    WITH d AS (
        SELECT count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status <> 'success') AS unfinished,
               coalesce(sum(greatest(attempt_count - 1, 0)), 0) AS retries,
               string_agg(target_service || ': ' || last_error, '; ')
                   FILTER (WHERE status = 'failed') AS errors
          FROM webhook_deliveries
         WHERE event_id = v_event
    )
    UPDATE webhook_events e
       SET status = CASE WHEN d.failed > 0 THEN 'failed'
                         WHEN d.unfinished = 0 THEN 'delivered'
                         ELSE 'received' END,
           processed_at = CASE WHEN d.failed > 0 OR d.unfinished = 0 THEN now() END,
           error_message = d.errors,
           retry_count = d.retries
      FROM d
     WHERE e.id = v_event;
    RETURN v_event;
END
$$;
