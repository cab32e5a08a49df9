-- mimic_defer_jobs: enqueue procrastinate jobs from arrays, in the caller's transaction or
-- statement; returns their ids in the order given. The one place that knows procrastinate's
-- SQL entry point (an upgrade that renames it needs a migration that redefines this), so
-- that a statement can defer jobs among its other work (the webhook group commit does).
CREATE FUNCTION mimic_defer_jobs(
    queues text[], tasks text[], priorities int[], locks text[], args jsonb[],
    scheduled timestamptz[]
) RETURNS bigint[]
LANGUAGE sql VOLATILE AS $$
    SELECT procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(q, t, p, l, NULL, a, s)::procrastinate_job_to_defer_v1
          FROM unnest(queues, tasks, priorities, locks, args, scheduled)
               WITH ORDINALITY AS j(q, t, p, l, a, s, n)
         ORDER BY n
    ))
$$;
