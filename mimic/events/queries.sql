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
-- Claim an attempt: counts it before the call, so a crash mid-call is still counted. An
-- attempt still open means the last one never finished: say so in last_error.
UPDATE webhook_deliveries d
   SET status = 'dispatched', attempt_count = d.attempt_count + 1, attempt_open = true,
       updated_at = now(),
       last_error = CASE WHEN d.attempt_open
                         THEN format('attempt %s was interrupted (worker stopped, died or lost '
                                     'the database); retried', d.attempt_count)
                         ELSE d.last_error END
  FROM webhook_events e
 WHERE d.id = $1 AND e.id = d.event_id AND d.status IN ('pending', 'dispatched', 'failed')
RETURNING d.attempt_count AS attempt, d.task_name, d.target_service, e.id AS event_uuid,
          e.provider, e.event_id, e.event_type, e.payload::text AS payload

-- name: interrupt_delivery
-- An attempt cut off by a shutdown: record why it will run again.
UPDATE webhook_deliveries
   SET attempt_open = false, last_error = $2, updated_at = now()
 WHERE id = $1 AND status = 'dispatched' AND attempt_open

-- name: get_delivery_status
-- Status of one delivery.
SELECT status FROM webhook_deliveries WHERE id = $1

-- name: finish_delivery
-- Record an attempt's outcome and, when final, roll its event up (one round trip).
SELECT mimic_finish_delivery($1, $2, $3::jsonb, $4)
