-- name: store_events
-- The group commit's one statement (so one round trip, and its own transaction): insert a
-- batch of verified events (no key twice), then, for each event inserted, its deliveries
-- ($9..$12, one row per route) and their jobs. An event whose (provider, event_id) is already
-- stored is skipped; the rows returned are the ids inserted ('new') and the stored rows this
-- statement's snapshot sees for the keys skipped ('old'). A key skipped because a concurrent
-- transaction committed it meanwhile is not seen here: the caller looks it up again.
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bytea[], $7::text[], $8::text[])
                  WITH ORDINALITY AS e(id, provider, event_type, event_id, payload, raw_body,
                                       signature, status, n)
), inserted AS (
    INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body,
                                signature, status, processed_at)
    SELECT id, provider, event_type, event_id, payload::jsonb, raw_body, signature, status,
           CASE WHEN status = 'ignored' THEN now() END
      -- In key order, so two batches holding the same keys cannot deadlock on the index.
      FROM input ORDER BY provider, event_id
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id
), routes AS (
    SELECT r.event, r.delivery, r.target, r.task,
           row_number() OVER (ORDER BY r.n) AS k
      FROM unnest($9::uuid[], $10::uuid[], $11::text[], $12::text[])
           WITH ORDINALITY AS r(event, delivery, target, task, n)
     WHERE r.event IN (SELECT id FROM inserted)
), jobs AS (
    SELECT mimic_defer_jobs(
        array_agg($13::text ORDER BY k), array_agg(task ORDER BY k),
        array_agg(0 ORDER BY k), array_agg(NULL::text ORDER BY k),
        array_agg(jsonb_build_object('delivery_id', delivery::text) ORDER BY k),
        array_agg(NULL::timestamptz ORDER BY k)
    ) AS ids
      FROM routes
), deliveries AS (
    INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id)
    SELECT r.delivery, r.event, r.target, r.task, j.id
      FROM routes r
      JOIN unnest((SELECT ids FROM jobs)) WITH ORDINALITY AS j(id, k) ON j.k = r.k
)
SELECT 'new' AS kind, id, NULL AS provider, NULL AS event_id FROM inserted
UNION ALL
SELECT 'old', w.id, w.provider, w.event_id
  FROM input k
  JOIN webhook_events w ON w.provider = k.provider AND w.event_id = k.event_id
 WHERE k.id NOT IN (SELECT id FROM inserted)

-- name: find_event_ids
-- Our ids for providers' events (used to answer duplicates).
SELECT w.provider, w.event_id, w.id
  FROM webhook_events w
  JOIN unnest($1::text[], $2::text[]) AS k(provider, event_id)
    ON w.provider = k.provider AND w.event_id = k.event_id

-- name: insert_deliveries
-- One delivery per route, with the procrastinate job that will carry it.
INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id)
SELECT d.id, d.event, d.target, d.task, d.job
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
       AS d(event, id, target, task, job)

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
          e.provider, e.event_id, e.event_type, e.payload::text AS payload,
          extract(epoch FROM now() - d.created_at)::float8 AS age_seconds

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

-- name: list_events
-- Keyset page, newest first, with optional filters; ($7, $8) is the previous page's last row.
SELECT id, provider, event_type, event_id, status, received_at, processed_at, error_message,
       retry_count
  FROM webhook_events
 WHERE ($1::text IS NULL OR provider = $1)
   AND ($2::text IS NULL OR status = $2)
   AND ($3::text IS NULL OR event_type = $3)
   AND ($4::timestamptz IS NULL OR received_at >= $4)
   AND ($5::timestamptz IS NULL OR received_at < $5)
   AND ($7::timestamptz IS NULL OR (received_at, id) < ($7, $8::uuid))
 ORDER BY received_at DESC, id DESC
 LIMIT $6

-- name: get_event
-- One event by our id.
SELECT id, provider, event_type, event_id, payload::text AS payload, signature, status,
       received_at, processed_at, error_message, retry_count
  FROM webhook_events WHERE id = $1

-- name: get_event_by_provider_id
-- One event by the provider's id.
SELECT id, provider, event_type, event_id, payload::text AS payload, signature, status,
       received_at, processed_at, error_message, retry_count
  FROM webhook_events WHERE provider = $1 AND event_id = $2

-- name: event_deliveries
-- An event's deliveries, oldest first, with the status of each one's procrastinate job.
SELECT d.id, d.target_service, d.task_name, d.status, d.attempt_count, d.last_error,
       d.result::text AS result, d.job_id, j.status::text AS job_status, d.superseded,
       d.created_at, d.updated_at, d.completed_at
  FROM webhook_deliveries d
  LEFT JOIN procrastinate_jobs j ON j.id = d.job_id
 WHERE d.event_id = $1
 ORDER BY d.created_at, d.id

-- name: lock_event_for_replay
-- The event a replay re-routes, locked against concurrent roll-ups and replays.
SELECT id, provider, event_type FROM webhook_events WHERE id = $1 FOR UPDATE

-- name: supersede_deliveries
-- A replay's earlier deliveries stay for audit but no longer count.
UPDATE webhook_deliveries SET superseded = true, updated_at = now()
 WHERE event_id = $1 AND NOT superseded

-- name: restart_event
-- A replayed event is received again (or ignored, when no route applies today).
UPDATE webhook_events
   SET status = $2, processed_at = CASE WHEN $2 = 'ignored' THEN now() END,
       error_message = NULL, retry_count = 0
 WHERE id = $1

-- name: list_deliveries
-- Keyset page of deliveries, newest first (the dead-letter view with status=failed).
SELECT d.id, d.event_id AS event_uuid, e.provider, e.event_type, e.event_id, d.target_service,
       d.task_name, d.status, d.attempt_count, d.last_error, d.job_id, d.created_at,
       d.updated_at
  FROM webhook_deliveries d
  JOIN webhook_events e ON e.id = d.event_id
 WHERE NOT d.superseded
   AND ($1::text IS NULL OR d.status = $1)
   AND ($2::text IS NULL OR d.target_service = $2)
   AND ($3::timestamptz IS NULL OR d.created_at >= $3)
   AND ($4::timestamptz IS NULL OR d.created_at < $4)
   AND ($6::timestamptz IS NULL OR (d.created_at, d.id) < ($6, $7::uuid))
 ORDER BY d.created_at DESC, d.id DESC
 LIMIT $5

-- name: lock_failed_delivery
-- One delivery to retry, locked, with what decides whether it can be.
SELECT id, event_id, task_name, status, superseded FROM webhook_deliveries
 WHERE id = $1 FOR UPDATE

-- name: pick_failed_deliveries
-- Up to $4 failed, current deliveries matching the filters, oldest first.
SELECT d.id FROM webhook_deliveries d
 WHERE d.status = 'failed' AND NOT d.superseded
   AND ($1::text IS NULL OR d.target_service = $1)
   AND ($2::timestamptz IS NULL OR d.created_at >= $2)
   AND ($3::timestamptz IS NULL OR d.created_at < $3)
 ORDER BY d.created_at, d.id
 LIMIT $4

-- name: lock_failed_batch
-- Of these deliveries, the ones still failed and current, locked (others' locks skipped).
SELECT id, event_id, task_name FROM webhook_deliveries
 WHERE id = ANY($1::uuid[]) AND status = 'failed' AND NOT superseded
   FOR UPDATE SKIP LOCKED

-- name: reset_deliveries
-- Retry failed deliveries: a fresh attempt budget and a new job each; returns their events.
UPDATE webhook_deliveries d
   SET status = 'pending', attempt_count = 0, attempt_open = false, job_id = j.job_id,
       completed_at = NULL, updated_at = now()
  FROM unnest($1::uuid[], $2::bigint[]) AS j(id, job_id)
 WHERE d.id = j.id AND d.status = 'failed' AND NOT d.superseded
RETURNING d.event_id

-- name: roll_up_event
-- Recompute an event's status from its current deliveries.
SELECT mimic_roll_up_event($1)

-- name: create_bulk_retry
-- A bulk retry, queued.
INSERT INTO bulk_retries (id, filters, key_id, job_id) VALUES ($1, $2::jsonb, $3, $4)

-- name: get_bulk_retry
-- A bulk retry's progress.
SELECT id, filters::text AS filters, status, total, retried, key_id, job_id, created_at,
       finished_at
  FROM bulk_retries WHERE id = $1

-- name: update_bulk_retry
-- Progress of a bulk retry.
UPDATE bulk_retries
   SET status = $2, total = $3, retried = $4,
       finished_at = CASE WHEN $2 = 'done' THEN now() END
 WHERE id = $1

-- name: prune_events
-- Delete a batch of finished events older than the retention (their deliveries go with them).
DELETE FROM webhook_events
 WHERE id IN (SELECT id FROM webhook_events
               WHERE received_at < now() - make_interval(days => $1)
                 AND status IN ('delivered', 'failed', 'ignored')
               ORDER BY received_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)
