"""Routing speed: `mimic worker` draining queued deliveries against procrastinate itself
draining the same number of no-op jobs, at the same concurrency (10), on the same database, in
the same run, at each backlog size (`--backlogs`, 5,000 and 100,000 by default).

The reference is procrastinate as a careful operator would run it: `bench/noop.py --tuned`
(an autocommit pool without a check at every checkout, a 0.5 s poll, as Mimic's worker has)
and, for information, stock (procrastinate's own connector, pool and 5 s poll). Its jobs do
nothing, so its rate is the ceiling of procrastinate's own bookkeeping (a fetch and a finish
per job) on this machine and this database: what Mimic's worker would reach if routing a
delivery cost nothing and every delivery had a job of its own.

Every drain, Mimic's or the reference's, goes through the same steps:

1. fill: no-op jobs deferred in one statement (procrastinate's own defer function), or, for
   Mimic, signed Stripe `invoice.paid` webhooks sent through the real API at 16 keep-alive
   connections (bench/load.py), each stored as one event with exactly one delivery (the seed
   route `inkpass-invoice-event`) to a local inkpass stand-in that answers 200;
2. ANALYZE procrastinate_jobs, webhook_deliveries and webhook_events. A jobs table never
   analyzed since it was filled keeps the statistics of an empty table, and procrastinate's
   fetch then slows as the backlog grows: that is not its real ceiling, and it would flatter
   Mimic, most of all at 100,000;
3. start the consumer, and time from its first finished item to an empty backlog (no-op jobs
   left in `bench_noop`, or deliveries still pending or dispatched). The backlog is counted
   often only near its end, so that counting a big one costs the database (which the
   consumer shares) little;
4. stop the consumer, read the transactions it committed (pg_stat_database), delete the
   finished procrastinate_jobs rows (their procrastinate_events go with them) and VACUUM the
   four tables, so that the next drain starts from a table of the same shape whoever ran
   before: no finished jobs piled up, no dead rows (a careful operator runs autovacuum, which
   would have caught up between bursts; some servers have it off). Mimic's events and
   deliveries stay, as they do in production.

Before the first size, whatever earlier phases left queued (the ingest phases send webhooks
with no worker running) is delivered by a `mimic worker`, untimed, so every size starts from
an empty queue. The reference's worker reads only its own queue, so it can never take (and
fail: no such task) a Mimic job.

Printed per size: procrastinate's jobs/s, stock and tuned; Mimic's deliveries/s and its ratio
to tuned (the target, >= 0.80: Mimic's routing costs at most a fifth more than procrastinate's
own bookkeeping) and to stock; transactions per delivery (per job for the reference). Then
Mimic's rate at the largest size over its rate at the smallest (target >= 0.90: routing does
not slow down as the backlog grows). Rates are per delivery (Mimic) and per job (reference).
Webhooks that arrive together are stored by one commit, and their deliveries to one
destination share a job (the count of jobs is printed), as in production under load; a last,
smaller Mimic run sends them one at a time, one delivery per job, to show that case too.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

#: Mimic's backlog: deliveries not finished (a job may carry several).
DELIVERIES_LEFT = (
    "SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'dispatched') AND $1 <> ''"
)
#: The reference's backlog: its jobs not finished.
JOBS_LEFT = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') AND queue_name = $1"
)
#: Deliveries that succeeded so far (a drain must deliver every one it counts).
SUCCEEDED = "SELECT count(*) FROM webhook_deliveries WHERE status = 'success' AND $1 <> ''"
ANALYZE = "ANALYZE procrastinate_jobs; ANALYZE webhook_deliveries; ANALYZE webhook_events"
#: Finished jobs of every queue (their procrastinate_events rows are deleted with them).
FORGET = "DELETE FROM procrastinate_jobs WHERE status NOT IN ('todo', 'doing')"
#: One statement: VACUUM cannot run in the implicit transaction of a multi-statement query.
VACUUM = "VACUUM procrastinate_jobs, procrastinate_events, webhook_deliveries, webhook_events"
#: What a `mimic worker` still has to do before a measurement may start: its deliveries, and
#: its jobs (a job may outlive its last delivery by a statement).
UNFINISHED = """
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'dispatched')),
       (SELECT count(*) FROM procrastinate_jobs
         WHERE status IN ('todo', 'doing') AND queue_name = 'webhooks')
"""
#: Leftovers of an interrupted bench on a reused database: jobs no Mimic worker reads.
STRAYS = "DELETE FROM procrastinate_jobs WHERE status = 'todo' AND queue_name = 'bench_noop'"
NOOP_QUEUE = "bench_noop"
WEBHOOK_QUEUE = "webhooks"
#: The load generator's connections when filling Mimic's backlog (the ingest phase's default).
FILL_CONNECTIONS = 16

MeasureDrain = Callable[..., Awaitable[tuple[Any, subprocess.Popen[bytes]]]]
Fill = Callable[[int, int, int], Awaitable[None]]


async def execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch_count(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def defer_noops(dsn: str, count: int) -> None:
    """``count`` no-op jobs, in one statement (procrastinate's own defer function)."""
    await execute(
        dsn,
        """
        SELECT procrastinate_defer_jobs_v1(ARRAY(
            SELECT ROW($1, $2, 0, NULL, NULL, jsonb_build_object('n', n), NULL)
                   ::procrastinate_job_to_defer_v1
              FROM generate_series(1, $3) AS n))
        """,
        NOOP_QUEUE,
        "bench.noop",
        count,
    )


async def tidy(dsn: str) -> None:
    """After a drain: no finished jobs left behind, no dead rows (step 4 above)."""
    await execute(dsn, FORGET)
    await execute(dsn, VACUUM)


async def unfinished(dsn: str) -> tuple[int, int]:
    """(deliveries, jobs) a `mimic worker` has still to finish."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(UNFINISHED)
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def settle(dsn: str, env: dict[str, str]) -> int:
    """Deliver, untimed, whatever earlier phases left queued; returns how many deliveries."""
    await execute(dsn, STRAYS)
    deliveries, jobs = await unfinished(dsn)
    if deliveries or jobs:
        worker = subprocess.Popen([sys.executable, "-m", "mimic", "worker"], env=env)
        try:
            deadline = time.monotonic() + 1800
            while any(await unfinished(dsn)):
                if worker.poll() is not None:
                    raise SystemExit(f"mimic worker exited with {worker.returncode}")
                if time.monotonic() > deadline:
                    raise SystemExit("earlier phases' deliveries still queued after 30 minutes")
                await asyncio.sleep(0.5)
        finally:
            _stop(worker)
    await tidy(dsn)
    return deliveries


async def drain(
    dsn: str,
    queue: str,
    command: list[str],
    env: dict[str, str],
    count_sql: str,
    measure_drain: MeasureDrain,
) -> Any:
    """Steps 2 to 4 above, once the backlog is filled: the consumer's Drain."""
    await execute(dsn, ANALYZE)
    result, proc = await measure_drain(dsn, queue, command, env, count_sql)
    _stop(proc)
    await tidy(dsn)
    return result


async def drain_mimic(
    dsn: str,
    env: dict[str, str],
    api_port: int,
    size: int,
    connections: int,
    command: list[str],
    measure_drain: MeasureDrain,
    fill: Fill,
) -> tuple[Any, str]:
    """Fill Mimic's backlog through the API and drain it with ``command``: the Drain, and
    what was queued ("5,001 deliveries in 647 jobs": the load generator's warm-up webhook is
    one more), with a warning when not every one of them was delivered."""
    succeeded = await fetch_count(dsn, SUCCEEDED, WEBHOOK_QUEUE)
    await fill(api_port, size, connections)
    deliveries = await fetch_count(dsn, DELIVERIES_LEFT, WEBHOOK_QUEUE)
    jobs = await fetch_count(dsn, JOBS_LEFT, WEBHOOK_QUEUE)
    result = await drain(dsn, WEBHOOK_QUEUE, command, env, DELIVERIES_LEFT, measure_drain)
    delivered = await fetch_count(dsn, SUCCEEDED, WEBHOOK_QUEUE) - succeeded
    queued = f"{deliveries:,} deliveries in {jobs:,} jobs"
    if delivered != deliveries:  # a failed delivery is not routing: say so beside the rate
        queued += f", ONLY {delivered:,} DELIVERED"
    return result, queued


async def routing_phase(
    dsn: str,
    env: dict[str, str],
    api_port: int,
    sizes: list[int],
    concurrency: int,
    measure_drain: MeasureDrain,
    fill: Fill,
) -> dict[int, float]:
    """Print the reference and Mimic at each backlog size; returns Mimic's rate by size."""
    print(
        f"routing: procrastinate no-op jobs (stock, tuned) and `mimic worker` deliveries to "
        f"inkpass, concurrency {concurrency}, backlogs {', '.join(f'{s:,}' for s in sizes)}; "
        "after each fill the tables are ANALYZEd, after each drain finished jobs are deleted "
        "and the tables VACUUMed (bench/routing.py)"
    )
    leftover = await settle(dsn, env)
    if leftover:
        print(f"  (first, untimed: the {leftover:,} deliveries earlier phases left queued)")
    mimic_rates: dict[int, float] = {}
    noop = [sys.executable, "-m", "bench.noop", f"--concurrency={concurrency}"]
    worker = [sys.executable, "-m", "mimic", "worker"]
    for size in sizes:
        references: dict[str, Any] = {}
        for mode, command in (("stock", noop), ("tuned", [*noop, "--tuned"])):
            await defer_noops(dsn, size)
            result = await drain(dsn, NOOP_QUEUE, command, env, JOBS_LEFT, measure_drain)
            references[mode] = result
            print(
                f"  {size:,} queued: procrastinate no-op jobs, {mode}: {result.rate:.0f} jobs/s; "
                f"{result.xacts_per_job:.2f} transactions/job"
            )
        result, queued = await drain_mimic(
            dsn, env, api_port, size, FILL_CONNECTIONS, worker, measure_drain, fill
        )
        mimic_rates[size] = result.rate
        tuned, stock = references["tuned"].rate, references["stock"].rate
        print(
            f"  {size:,} queued: mimic worker: {result.rate:.0f} deliveries/s = "
            f"{result.rate / tuned:.2f} x tuned procrastinate (target >= 0.80), "
            f"{result.rate / stock:.2f} x stock; {result.xacts_per_job:.2f} transactions per "
            f"delivery; {queued}; worker peak RSS {result.rss_mb:.0f} MB"
        )
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        print(
            f"  mimic at {large:,} queued / at {small:,}: "
            f"{mimic_rates[large] / mimic_rates[small]:.2f} (target >= 0.90)"
        )
    # One delivery per job: webhooks that arrive one at a time (no commit stores two).
    single = min(min(sizes), 2000)
    result, queued = await drain_mimic(dsn, env, api_port, single, 1, worker, measure_drain, fill)
    print(
        f"  {single:,} queued one per job (sent one at a time): mimic worker "
        f"{result.rate:.0f} deliveries/s; {result.xacts_per_job:.2f} transactions per delivery; "
        f"{queued}"
    )
    return mimic_rates


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)
