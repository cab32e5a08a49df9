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
