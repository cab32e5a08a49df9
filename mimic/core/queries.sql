-- name: defer_jobs
-- Enqueue procrastinate jobs on the caller's transaction (mimic_defer_jobs, migration 0007,
-- is the one place that knows procrastinate's SQL entry point).
SELECT mimic_defer_jobs($1::text[], $2::text[], $3::int[], $4::text[], $5::jsonb[],
                        $6::timestamptz[])

-- name: retry_stalled_job
-- Retry one job only if it is still `doing` on a worker whose heartbeat is stale (or gone).
WITH job AS (
    SELECT j.id FROM procrastinate_jobs j
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE j.id = $1 AND j.status = 'doing'
       AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => $2))
       FOR UPDATE OF j
)
SELECT count(*) FROM (
    SELECT procrastinate_retry_job_v2(job.id, now(), NULL, NULL, NULL) FROM job
) AS retried

-- name: forget_sweeps
-- The stalled-job sweep's own earlier runs that succeeded (it runs every few seconds).
-- (procrastinate keeps a reference to the latest periodic job of each task: kept too.)
DELETE FROM procrastinate_jobs
 WHERE task_name = $1 AND status = 'succeeded' AND id <> $2
   AND id NOT IN (SELECT job_id FROM procrastinate_periodic_defers WHERE job_id IS NOT NULL)

-- name: record_audit
-- Append one admin action to the audit log (the key by its id, never its value).
INSERT INTO audit_log (key_id, action, target_ids, outcome, detail)
VALUES ($1, $2, $3, $4, $5::jsonb)

-- name: insert_api_key
-- Store a new tenant key: its id and SHA-256, never the key itself.
INSERT INTO api_keys (id, key_hash, tenant_id, name) VALUES ($1, $2, $3, $4)

-- name: list_api_keys
-- Tenant keys, of tenant $1 or (when $1 is NULL) of all, by tenant then age.
SELECT id, tenant_id, name, created_at, revoked_at FROM api_keys
 WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, created_at, id

-- name: revoke_api_key
-- Revoke a key (once: a second revoke keeps the first time); its tenant, or nothing when there
-- is no such id.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING tenant_id

-- name: tenant_of_key
-- The tenant a live (unrevoked) key acts for, by the key's SHA-256.
SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL

-- name: circuit_failure
-- Count one failure of key $1 ($2 the reason); a count older than $3 seconds starts over.
INSERT INTO provider_circuits AS c (key, failures, first_failure_at, last_error)
VALUES ($1, 1, now(), $2)
ON CONFLICT (key) DO UPDATE
   SET failures = CASE WHEN c.first_failure_at IS NULL
                         OR c.first_failure_at < now() - make_interval(secs => $3)
                       THEN 1 ELSE c.failures + 1 END,
       first_failure_at = CASE WHEN c.first_failure_at IS NULL
                                 OR c.first_failure_at < now() - make_interval(secs => $3)
                               THEN now() ELSE c.first_failure_at END,
       last_error = $2
RETURNING failures

-- name: open_circuit
-- Open key $1's circuit for $2 seconds and clear its failure count; returns when it closes.
UPDATE provider_circuits
   SET open_until = now() + make_interval(secs => $2), failures = 0, first_failure_at = NULL
 WHERE key = $1
RETURNING open_until

-- name: reset_circuit
-- A success: forget key $1's failures.
UPDATE provider_circuits SET failures = 0, first_failure_at = NULL WHERE key = $1

-- name: circuit_snapshot
-- Circuits that are failing or open (the per-process snapshot).
SELECT key, open_until, failures FROM provider_circuits
 WHERE failures > 0 OR open_until > now()

-- name: take_send_token
-- Take one token of bucket $1 (capacity $2, refilled at $3 per second); the balance left.
INSERT INTO send_rate_buckets AS b (key, tokens, updated_at)
VALUES ($1, $2::float8 - 1, clock_timestamp())
ON CONFLICT (key) DO UPDATE
   SET tokens = least($2::float8,
                      b.tokens + $3::float8 * extract(epoch FROM clock_timestamp() - b.updated_at))
                - 1,
       updated_at = clock_timestamp()
RETURNING tokens

-- name: queue_counts
-- Jobs waiting or running, by queue (final statuses are left out: counting them would read
-- the whole table).
SELECT queue_name, status::text AS status, count(*) AS jobs
  FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing')
 GROUP BY queue_name, status

-- name: queue_oldest_todo
-- Per queue, the age in seconds of the oldest job due now or earlier, by defer order.
WITH oldest AS (
    SELECT queue_name, min(id) AS id FROM procrastinate_jobs
     WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
     GROUP BY queue_name
)
SELECT o.queue_name,
       extract(epoch FROM now() - coalesce(
           j.scheduled_at,
           (SELECT min(e.at) FROM procrastinate_events e
             WHERE e.job_id = o.id AND e.type = 'deferred')))::float8 AS age
  FROM oldest o JOIN procrastinate_jobs j ON j.id = o.id

-- name: try_send_token
-- Take a token of shared bucket $1 (capacity $2, $3 per second) only if due within $4
-- seconds; the seconds until it is due (more than $4: nothing was taken).
SELECT mimic_try_send_token($1, $2::float8, $3::float8, $4::float8)

-- name: take_token_now
-- Take a token of bucket $1 (capacity $2, $3 per second) only if one is there now; the
-- seconds until one is (0: taken; more: nothing taken). Committed without waiting for the
-- WAL flush: a token lost in a crash is one request more, not worth a disk flush each.
SELECT mimic_try_send_token($1, $2::float8, $3::float8, 0)
  FROM (SELECT set_config('synchronous_commit', 'off', true)) AS local_setting

-- name: list_audit
-- The audit log, newest first, by action and key if given; $4 is the last id of the page
-- before (ids grow with time).
SELECT id, at, key_id, action, target_ids, outcome, detail::text AS detail
  FROM audit_log
 WHERE ($1::text IS NULL OR action = $1)
   AND ($2::text IS NULL OR key_id = $2)
   AND ($4::bigint IS NULL OR id < $4)
 ORDER BY id DESC
 LIMIT $3
