-- name: store_events
-- The group commit's one statement (so one round trip, and its own transaction): insert a
-- batch of verified events (no key twice), then, for each event inserted, its deliveries
-- ($9..$12 and $15..$17, one row per route) and their jobs: one job per delivery, or per up
-- to $18 deliveries of the batch to the same destination under the same task (a worker then
-- claims and finishes them together). An event whose (provider,
-- event_id) is already stored is skipped; the rows returned are the ids inserted ('new') and
-- the stored rows this statement's snapshot sees for the keys skipped ('old'). A key skipped
-- because a concurrent transaction committed it meanwhile is not seen here: the caller looks
-- it up again. The routes were matched at gateway version $14: when the configuration has
-- changed since, nothing is stored and one 'stale' row says so (the caller matches again).
WITH fresh AS (
    SELECT 1 FROM gateway_version WHERE version = $14
), input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bytea[], $7::text[], $8::text[])
                  WITH ORDINALITY AS e(id, provider, event_type, event_id, payload, raw_body,
                                       signature, status, n)
     WHERE EXISTS (SELECT 1 FROM fresh)
), keyed AS (
    -- Deduplication (webhook_event_keys: a unique key cannot span the events' partitions), in
    -- key order, so two batches holding the same keys cannot deadlock on the index.
    INSERT INTO webhook_event_keys (provider, event_id, id)
    SELECT provider, event_id, id FROM input ORDER BY provider, event_id
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id
), inserted AS (
    INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body,
                                signature, status, processed_at)
    SELECT id, provider, event_type, event_id, payload::jsonb, raw_body, signature, status,
           CASE WHEN status = 'ignored' THEN now() END
      FROM input WHERE id IN (SELECT id FROM keyed)
    RETURNING id
), numbered AS (
    SELECT r.*, row_number() OVER (PARTITION BY r.task, r.target ORDER BY r.n) AS rn
      FROM unnest($9::uuid[], $10::uuid[], $11::text[], $12::text[], $15::uuid[], $16::text[],
                  $17::text[])
           WITH ORDINALITY AS r(event, delivery, target, task, route, path, body, n)
     WHERE r.event IN (SELECT id FROM inserted)
), routes AS (
    -- Deliveries of the batch with the same task and destination share a job, up to $18 per
    -- job: a group, numbered g.
    SELECT n.*, dense_rank() OVER (ORDER BY n.task, n.target, (n.rn - 1) / $18) AS g
      FROM numbered n
), groups AS (
    SELECT g, min(task) AS task, min(n) AS first,
           CASE WHEN count(*) = 1 THEN jsonb_build_object('delivery_id', min(delivery::text))
                ELSE jsonb_build_object('delivery_ids', jsonb_agg(delivery::text ORDER BY n))
           END AS args
      FROM routes GROUP BY g
), jobs AS (
    SELECT mimic_defer_jobs(
        array_agg($13::text ORDER BY first), array_agg(task ORDER BY first),
        array_agg(0 ORDER BY first), array_agg(NULL::text ORDER BY first),
        array_agg(args ORDER BY first), array_agg(NULL::timestamptz ORDER BY first)
    ) AS ids,
    array_agg(g ORDER BY first) AS gs
      FROM groups
), deliveries AS (
    INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id, route_id,
                                    path, body)
    SELECT r.delivery, r.event, r.target, r.task, j.id, r.route, r.path, r.body
      FROM routes r
      JOIN unnest((SELECT ids FROM jobs), (SELECT gs FROM jobs)) AS j(id, g) ON j.g = r.g
)
SELECT 'new' AS kind, id, NULL AS provider, NULL AS event_id FROM inserted
UNION ALL
SELECT 'old', w.id, w.provider, w.event_id
  FROM input k
  JOIN webhook_event_keys w ON w.provider = k.provider AND w.event_id = k.event_id
 WHERE k.id NOT IN (SELECT id FROM keyed)
UNION ALL
SELECT 'stale', NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM fresh)

-- name: find_event_ids
-- Our ids for providers' events (used to answer duplicates, within EVENT_DEDUP_DAYS).
SELECT w.provider, w.event_id, w.id
  FROM webhook_event_keys w
  JOIN unnest($1::text[], $2::text[]) AS k(provider, event_id)
    ON w.provider = k.provider AND w.event_id = k.event_id

-- name: insert_deliveries
-- One delivery per route, with the procrastinate job that will carry it.
INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id, route_id,
                                path, body)
SELECT d.id, d.event, d.target, d.task, d.job, d.route, d.path, d.body
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::uuid[],
              $7::text[], $8::text[])
       AS d(event, id, target, task, job, route, path, body)

-- name: claim_deliveries
-- Claim attempts of several deliveries at once (one statement): each attempt is counted
-- before the call, so a crash mid-call is still counted; an attempt still open means the
-- last one never finished: say so in last_error. Rows are locked in id order, so two
-- batches cannot deadlock. Returns what each delivery sends, and the gateway version (the
-- worker's copy of the destinations must be at least that fresh).
WITH ordered AS (
    SELECT d.id FROM webhook_deliveries d
      JOIN unnest($1::uuid[], $2::bigint[]) AS a(id, job) ON a.id = d.id
     WHERE d.status IN ('pending', 'dispatched', 'failed')
       -- Only by the job that owns it ($2; NULL: outside a job; a row without a job was
       -- written by an older Mimic): a stale job of a delivery that moved to another job
       -- claims nothing (and a paused one waits for its resume, which gives it a new job).
       AND (a.job IS NULL OR d.job_id IS NULL OR d.job_id = a.job)
     ORDER BY d.id FOR UPDATE OF d
), claimed AS (
    UPDATE webhook_deliveries d
       SET status = 'dispatched', attempt_count = d.attempt_count + 1, attempt_open = true,
           updated_at = now(),
           last_error = CASE WHEN d.attempt_open
                             THEN format('attempt %s was interrupted (worker stopped, died or '
                                         'lost the database); retried', d.attempt_count)
                             ELSE d.last_error END
      FROM ordered o
     WHERE d.id = o.id
    RETURNING d.id, d.event_id, d.attempt_count, d.task_name, d.target_service, d.route_id,
              d.path, d.body, d.created_at
)
SELECT c.id AS delivery_id, c.attempt_count AS attempt, c.task_name, c.target_service,
       c.route_id, c.path, c.body, e.id AS event_uuid, e.provider, e.event_id, e.event_type,
       e.payload::text AS payload, e.received_at,
       CASE WHEN c.body = 'event' THEN e.raw_body END AS raw_body,
       extract(epoch FROM now() - c.created_at)::float8 AS age_seconds,
       (SELECT version FROM gateway_version) AS gateway_version
  FROM claimed c
  JOIN webhook_events e ON e.id = c.event_id

-- name: set_delivery_job
-- The job that carries a delivery's next attempt.
UPDATE webhook_deliveries SET job_id = $2, updated_at = now() WHERE id = $1

-- name: release_attempt
-- An attempt that did not happen (its destination is rate limited or its circuit open): not
-- counted, and the delivery waits for its job's next run.
UPDATE webhook_deliveries
   SET attempt_count = greatest(attempt_count - 1, 0), attempt_open = false,
       last_error = $2, updated_at = now()
 WHERE id = $1 AND status = 'dispatched'

-- name: park_delivery
-- A delivery whose destination is paused or disabled waits, uncounted and without a job,
-- until the destination is resumed.
UPDATE webhook_deliveries
   SET status = 'paused', attempt_count = greatest(attempt_count - 1, 0), attempt_open = false,
       job_id = NULL, updated_at = now()
 WHERE id = $1 AND status = 'dispatched'

-- name: lock_paused
-- A batch of a destination's paused deliveries, oldest first, to queue again.
SELECT id, event_id, task_name FROM webhook_deliveries
 WHERE target_service = $1 AND status = 'paused'
 ORDER BY created_at, id
 LIMIT $2
   FOR UPDATE SKIP LOCKED

-- name: unpause
-- Paused deliveries queued again, each with its new job.
UPDATE webhook_deliveries d
   SET status = 'pending', job_id = j.job_id, updated_at = now()
  FROM unnest($1::uuid[], $2::bigint[]) AS j(id, job_id)
 WHERE d.id = j.id AND d.status = 'paused'

-- name: paused_of_active
-- Destinations that are active but still have paused deliveries (a resume cut short).
SELECT DISTINCT d.target_service FROM webhook_deliveries d
  JOIN gateway_destinations g ON g.name = d.target_service
 WHERE d.status = 'paused' AND g.state = 'active'

-- name: count_unfinished
-- A destination's deliveries not finished yet.
SELECT count(*) FROM webhook_deliveries
 WHERE target_service = $1 AND status IN ('pending', 'dispatched', 'paused')

-- name: fail_unfinished
-- Fail a destination's unfinished deliveries (it is being deleted); returns their events.
UPDATE webhook_deliveries
   SET status = 'failed', last_error = $2, attempt_open = false, updated_at = now(),
       completed_at = now()
 WHERE target_service = $1 AND status IN ('pending', 'dispatched', 'paused')
RETURNING event_id

-- name: interrupt_delivery
-- An attempt cut off by a shutdown: record why it will run again.
UPDATE webhook_deliveries
   SET attempt_open = false, last_error = $2, updated_at = now()
 WHERE id = $1 AND status = 'dispatched' AND attempt_open

-- name: get_delivery_status
-- Status of one delivery.
SELECT status FROM webhook_deliveries WHERE id = $1

-- name: finish_deliveries
-- Record several attempts' outcomes and, when final, roll their events up (one round trip).
SELECT mimic_finish_deliveries($1::uuid[], $2::text[], $3::jsonb[], $4::text[])

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
SELECT d.id, d.target_service, d.task_name, d.route_id, r.name AS route_name, d.status,
       d.attempt_count, d.last_error, d.result::text AS result, d.job_id,
       j.status::text AS job_status, d.superseded, d.created_at, d.updated_at, d.completed_at
  FROM webhook_deliveries d
  LEFT JOIN procrastinate_jobs j ON j.id = d.job_id
  LEFT JOIN gateway_routes r ON r.id = d.route_id
 WHERE d.event_id = $1
 ORDER BY d.created_at, d.id

-- name: lock_event_for_replay
-- The event a replay re-routes, locked against concurrent roll-ups and replays.
SELECT id, provider, event_type, payload::text AS payload FROM webhook_events
 WHERE id = $1 FOR UPDATE

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
       d.task_name, d.route_id, d.status, d.attempt_count, d.last_error, d.job_id, d.created_at,
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

-- name: partitions
-- A partitioned table's partitions, oldest first (NULL bounds: the default partition).
SELECT name, lower_bound, upper_bound FROM mimic_partitions($1)

-- name: ensure_partitions
-- Partitions of the table ($1, by $2) of interval $3 ahead until now() + $4; their names.
SELECT mimic_ensure_partitions($1, $2, $3, now(), now() + $4::text::interval) AS name

-- name: drop_partition
-- Drop a partition past the retention unless a row in it is still unfinished (status in $3).
SELECT mimic_drop_partition($1, $2, $3::text[])

-- name: prune_event_keys
-- Forget a batch of provider event ids past the deduplication window.
DELETE FROM webhook_event_keys
 WHERE ctid = ANY (ARRAY(SELECT ctid FROM webhook_event_keys
                          WHERE received_at < now() - make_interval(days => $1)
                          LIMIT $2))


-- --- destinations and routes: written by mimic/events/gateway.py only ---------------------------

-- name: gateway_version
-- The version of the gateway's configuration (bumped by a trigger on every change).
SELECT version FROM gateway_version

-- name: load_routes
-- Every enabled route with its destination's state, and the version they are current at (one
-- statement: one snapshot).
SELECT (SELECT version FROM gateway_version) AS version,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'id', r.id, 'name', r.name, 'provider', r.provider,
                    'event_types', r.event_types, 'filter', r.filter,
                    'destination', r.destination, 'path', r.path, 'body', r.body,
                    'task_name', r.task_name, 'destination_state', d.state)
                    ORDER BY r.created_at, r.id)
                  FROM gateway_routes r
                  JOIN gateway_destinations d ON d.name = r.destination
                 WHERE r.enabled), '[]')::text AS routes

-- name: load_destinations
-- Every destination as the worker uses it (sealed values base64), with the version.
SELECT (SELECT version FROM gateway_version) AS version,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'name', name, 'url', url, 'headers', headers,
                    'api_key_header', api_key_header, 'api_key_key_id', api_key_key_id,
                    'api_key_nonce', encode(api_key_nonce, 'base64'),
                    'api_key_ciphertext', encode(api_key_ciphertext, 'base64'),
                    'signing_secrets', signing_secrets,
                    'timeout_seconds', timeout_seconds, 'max_attempts', max_attempts,
                    'backoff_base_seconds', backoff_base_seconds,
                    'backoff_max_seconds', backoff_max_seconds,
                    'rate_per_second', rate_per_second, 'circuit_failures', circuit_failures,
                    'circuit_window_seconds', circuit_window_seconds,
                    'circuit_cooldown_seconds', circuit_cooldown_seconds,
                    'state', state, 'managed_by', managed_by))
                  FROM gateway_destinations), '[]')::text AS destinations

-- name: list_destinations
-- Every destination, by name, with its unfinished deliveries.
SELECT d.*, (SELECT count(*) FROM webhook_deliveries w
              WHERE w.target_service = d.name
                AND w.status IN ('pending', 'dispatched', 'paused')) AS unfinished_deliveries
  FROM gateway_destinations d
 WHERE $1::text IS NULL OR d.name = $1
 ORDER BY d.name

-- name: lock_destination
-- One destination, locked for a change.
SELECT * FROM gateway_destinations WHERE name = $1 FOR UPDATE

-- name: upsert_destination
-- Write a destination whole (created, or changed after lock_destination).
INSERT INTO gateway_destinations AS d (
    name, url, headers, api_key_header, api_key_key_id, api_key_nonce, api_key_ciphertext,
    api_key_last4, signing_secrets, timeout_seconds, max_attempts, backoff_base_seconds,
    backoff_max_seconds, rate_per_second, circuit_failures, circuit_window_seconds,
    circuit_cooldown_seconds, state, managed_by)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19)
ON CONFLICT (name) DO UPDATE
   SET url = EXCLUDED.url, headers = EXCLUDED.headers,
       api_key_header = EXCLUDED.api_key_header, api_key_key_id = EXCLUDED.api_key_key_id,
       api_key_nonce = EXCLUDED.api_key_nonce, api_key_ciphertext = EXCLUDED.api_key_ciphertext,
       api_key_last4 = EXCLUDED.api_key_last4, signing_secrets = EXCLUDED.signing_secrets,
       timeout_seconds = EXCLUDED.timeout_seconds, max_attempts = EXCLUDED.max_attempts,
       backoff_base_seconds = EXCLUDED.backoff_base_seconds,
       backoff_max_seconds = EXCLUDED.backoff_max_seconds,
       rate_per_second = EXCLUDED.rate_per_second, circuit_failures = EXCLUDED.circuit_failures,
       circuit_window_seconds = EXCLUDED.circuit_window_seconds,
       circuit_cooldown_seconds = EXCLUDED.circuit_cooldown_seconds,
       state = EXCLUDED.state, managed_by = EXCLUDED.managed_by, updated_at = now()
 WHERE $20
RETURNING name

-- name: set_destination_state
-- Pause, resume, disable; the previous state is returned (NULL: no such destination).
WITH old AS (SELECT state FROM gateway_destinations WHERE name = $1 FOR UPDATE)
UPDATE gateway_destinations d SET state = $2, updated_at = now()
  FROM old WHERE d.name = $1
RETURNING old.state

-- name: set_settings_destination
-- The destination defined by settings (inkpass): its URL as this process was started with.
UPDATE gateway_destinations SET url = $2
 WHERE name = $1 AND managed_by = 'settings' AND url IS DISTINCT FROM $2

-- name: delete_destination
-- A destination and its routes.
WITH routes AS (DELETE FROM gateway_routes WHERE destination = $1 RETURNING id)
DELETE FROM gateway_destinations WHERE name = $1
RETURNING (SELECT count(*) FROM routes) AS routes

-- name: lock_gateway
-- Serialise writers of the whole configuration (the routes file's sync).
SELECT version FROM gateway_version FOR UPDATE

-- name: destinations_to_rotate
-- Destinations with a secret sealed under another key than $1, locked.
SELECT * FROM gateway_destinations
 WHERE api_key_key_id <> $1
    OR EXISTS (SELECT 1 FROM jsonb_array_elements(signing_secrets) s WHERE s->>'key_id' <> $1)
   FOR UPDATE

-- name: destination_exists
-- A destination a route is about to refer to, kept from being deleted until the route is in.
SELECT 1 FROM gateway_destinations WHERE name = $1 FOR KEY SHARE

-- name: count_routes_to
-- Routes that send to a destination.
SELECT count(*) FROM gateway_routes WHERE destination = $1

-- name: list_routes
-- Every route (or one), oldest first (by name among those made together).
SELECT id, name, provider, event_types, filter::text AS filter, destination, path, body,
       task_name, enabled, managed_by, created_at, updated_at
  FROM gateway_routes
 WHERE ($1::uuid IS NULL OR id = $1)
   AND ($2::text IS NULL OR destination = $2)
   AND ($3::text IS NULL OR provider = $3)
 ORDER BY created_at, name NULLS LAST, id

-- name: lock_route
-- One route, locked for a change.
SELECT id, name, provider, event_types, filter::text AS filter, destination, path, body,
       task_name, enabled, managed_by, created_at, updated_at
  FROM gateway_routes WHERE id = $1 FOR UPDATE

-- name: upsert_route
-- Write a route whole.
INSERT INTO gateway_routes AS r (id, name, provider, event_types, filter, destination, path,
                                 body, task_name, enabled, managed_by)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE
   SET name = EXCLUDED.name, provider = EXCLUDED.provider,
       event_types = EXCLUDED.event_types, filter = EXCLUDED.filter,
       destination = EXCLUDED.destination, path = EXCLUDED.path, body = EXCLUDED.body,
       task_name = EXCLUDED.task_name, enabled = EXCLUDED.enabled,
       managed_by = EXCLUDED.managed_by, updated_at = now()

-- name: delete_route
-- One route (its deliveries keep its id, for audit).
DELETE FROM gateway_routes WHERE id = $1

-- name: route_names
-- Today's names of routes, by id.
SELECT id, name FROM gateway_routes WHERE id = ANY($1::uuid[])

-- name: delete_config_routes
-- Routes the routes file no longer defines.
DELETE FROM gateway_routes WHERE managed_by = 'config' AND NOT (id = ANY($1::uuid[]))
RETURNING id

-- name: release_config_destinations
-- Destinations the routes file no longer defines: deleted when nothing refers to them, else
-- handed to the API (so their deliveries still have somewhere to go).
WITH gone AS (
    SELECT name FROM gateway_destinations
     WHERE managed_by = 'config' AND NOT (name = ANY($1::text[]))
), unused AS (
    DELETE FROM gateway_destinations d USING gone g
     WHERE d.name = g.name
       AND NOT EXISTS (SELECT 1 FROM gateway_routes r WHERE r.destination = d.name)
       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.target_service = d.name
                        AND w.status IN ('pending', 'dispatched', 'paused'))
    RETURNING d.name
)
UPDATE gateway_destinations d SET managed_by = 'api', updated_at = now()
  FROM gone g
 WHERE d.name = g.name AND d.name NOT IN (SELECT name FROM unused)
RETURNING d.name

-- name: get_raw_body
-- An event's body as received (the console shows it).
SELECT raw_body FROM webhook_events WHERE id = $1
