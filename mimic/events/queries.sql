-- name: insert_event
-- Store a verified event; returns nothing when (provider, event_id) already exists.
INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body, signature,
                            status, processed_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8,
        CASE WHEN $8 = 'ignored' THEN now() END)
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id

-- name: find_event_id
-- Our id for a provider's event (used to answer duplicates).
SELECT id FROM webhook_events WHERE provider = $1 AND event_id = $2

-- name: insert_deliveries
-- One delivery per route, with the procrastinate job that will carry it.
INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id)
SELECT d.id, $1, d.target, d.task, d.job
  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[]) AS d(id, target, task, job)

-- name: start_delivery
-- Claim an attempt: counts it before the call, so a crash mid-call is still counted.
UPDATE webhook_deliveries d
   SET status = 'dispatched', attempt_count = attempt_count + 1, updated_at = now()
  FROM webhook_events e
 WHERE d.id = $1 AND e.id = d.event_id AND d.status IN ('pending', 'dispatched', 'failed')
RETURNING d.attempt_count AS attempt, d.task_name, d.target_service, e.id AS event_uuid,
          e.provider, e.event_id, e.event_type, e.payload::text AS payload

-- name: get_delivery_status
-- Status of one delivery.
SELECT status FROM webhook_deliveries WHERE id = $1

-- name: finish_delivery
-- Record the outcome of one attempt; last_error keeps the latest failure, even after success.
-- A success is final: an overlapping attempt that ends later cannot overwrite it.
UPDATE webhook_deliveries
   SET status = $2, result = $3::jsonb, last_error = coalesce($4, last_error), updated_at = now(),
       completed_at = CASE WHEN $2 IN ('success', 'failed') THEN now() END
 WHERE id = $1 AND status <> 'success'
RETURNING event_id

-- name: lock_event
-- Serialise roll-ups of one event, so two deliveries finishing at once both count.
SELECT 1 FROM webhook_events WHERE id = $1 FOR UPDATE

-- name: roll_up_event
-- Event status from its deliveries: failed if any failed, delivered when all succeeded.
WITH d AS (
    SELECT count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status <> 'success') AS unfinished,
           coalesce(sum(greatest(attempt_count - 1, 0)), 0) AS retries,
           string_agg(target_service || ': ' || last_error, '; ')
               FILTER (WHERE status = 'failed') AS errors
      FROM webhook_deliveries
     WHERE event_id = $1
)
UPDATE webhook_events e
   SET status = CASE WHEN d.failed > 0 THEN 'failed'
                     WHEN d.unfinished = 0 THEN 'delivered'
                     ELSE 'received' END,
       processed_at = CASE WHEN d.failed > 0 OR d.unfinished = 0 THEN now() END,
       error_message = d.errors,
       retry_count = d.retries
  FROM d
 WHERE e.id = $1
RETURNING e.status
