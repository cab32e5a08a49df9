-- mimic_defer_jobs again, same signature and result, in PL/pgSQL: a SQL function that cannot
-- be inlined plans its body on every call, while PL/pgSQL keeps the plan for the session.
-- That planning was about a quarter of the webhook group commit's statement for one event.
CREATE OR REPLACE FUNCTION mimic_defer_jobs(
    queues text[], tasks text[], priorities int[], locks text[], args jsonb[],
    scheduled timestamptz[]
) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(q, t, p, l, NULL, a, s)::procrastinate_job_to_defer_v1
          FROM unnest(queues, tasks, priorities, locks, args, scheduled)
               WITH ORDINALITY AS j(q, t, p, l, a, s, n)
         ORDER BY n
    ));
END
$$;
