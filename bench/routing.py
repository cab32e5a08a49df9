"""Routing speed: `mimic worker` draining queued deliveries against procrastinate itself
draining the same number of no-op jobs, at the same concurrency, on the same database.

The reference is procrastinate as a careful operator would run it: `bench/noop.py --tuned`
(an autocommit pool without a check at every checkout, a 0.5 s poll) and, for information,
stock. Before every drain, of Mimic's or of the reference, the tables it reads are ANALYZEd:
on a jobs table never analyzed since it was filled, procrastinate's fetch slows as the backlog
grows, which is not its real ceiling and would flatter Mimic.

Each backlog size is measured alike for both: fill, ANALYZE, time from the first finished item
to empty, then delete the finished jobs (so the next size starts from the same table). Mimic's
backlog is filled through the real API with signed Stripe webhooks, each routed to inkpass once
(`invoice.paid`), at 16 connections, so webhooks stored by one commit share a job as they do in
production under load; a second, smaller Mimic run sends them one at a time (one delivery per
job) to show that case too. Rates are per delivery (Mimic) and per job (the reference).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import asyncpg

DELIVERIES_LEFT = (
    "SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'dispatched') AND $1 <> ''"
)
JOBS_LEFT = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') AND queue_name = $1"
)
ANALYZE = "ANALYZE procrastinate_jobs; ANALYZE webhook_deliveries; ANALYZE webhook_events"
#: Finished jobs of a previous size (both kinds), so each size starts from the same table.
FORGET = "DELETE FROM procrastinate_jobs WHERE status IN ('succeeded', 'failed')"


async def execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
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
        "bench_noop",
        "bench.noop",
        count,
    )


async def routing_phase(
    dsn: str,
    env: dict[str, str],
    api_port: int,
    sizes: list[int],
    concurrency: int,
    measure_drain: Any,
    fill: Any,
) -> dict[int, float]:
    """Print the reference and Mimic at each backlog size; returns Mimic's rate by size."""
    print(
        f"routing: procrastinate no-op jobs (stock, tuned) and `mimic worker` deliveries to "
        f"inkpass, concurrency {concurrency}, backlogs {', '.join(f'{s:,}' for s in sizes)}; "
        "tables ANALYZEd after each fill"
    )
    mimic_rates: dict[int, float] = {}
    noop = [sys.executable, "-m", "bench.noop", f"--concurrency={concurrency}"]
    worker = [sys.executable, "-m", "mimic", "worker"]
    for size in sizes:
        references: dict[str, Any] = {}
        for mode, command in (("stock", noop), ("tuned", [*noop, "--tuned"])):
            await defer_noops(dsn, size)
            await execute(dsn, ANALYZE)
            drain, proc = await measure_drain(dsn, "bench_noop", command, env, JOBS_LEFT)
            _stop(proc)
            await execute(dsn, FORGET)
            references[mode] = drain
            print(
                f"  {size:,} queued: procrastinate no-op jobs, {mode}: {drain.rate:.0f} jobs/s; "
                f"{drain.xacts_per_job:.2f} transactions/job"
            )
        await fill(api_port, size, 16)
        await execute(dsn, ANALYZE)
        drain, proc = await measure_drain(dsn, "webhooks", worker, env, DELIVERIES_LEFT)
        _stop(proc)
        await execute(dsn, FORGET)
        mimic_rates[size] = drain.rate
        tuned, stock = references["tuned"].rate, references["stock"].rate
        print(
            f"  {size:,} queued: mimic worker: {drain.rate:.0f} deliveries/s = "
            f"{drain.rate / tuned:.2f} x tuned procrastinate (target >= 0.80), "
            f"{drain.rate / stock:.2f} x stock; {drain.xacts_per_job:.2f} transactions per "
            f"delivery; worker peak RSS {drain.rss_mb:.0f} MB"
        )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(
            f"  mimic at {large:,} queued / at {small:,}: "
            f"{mimic_rates[large] / mimic_rates[small]:.2f} (target >= 0.90)"
        )
    # One delivery per job: webhooks that arrive one at a time (no commit stores two).
    single = min(sizes[0], 2000)
    await fill(api_port, single, 1)
    await execute(dsn, ANALYZE)
    drain, proc = await measure_drain(dsn, "webhooks", worker, env, DELIVERIES_LEFT)
    _stop(proc)
    await execute(dsn, FORGET)
    print(
        f"  {single:,} queued one per job (sent one at a time): mimic worker "
        f"{drain.rate:.0f} deliveries/s; {drain.xacts_per_job:.2f} transactions per delivery"
    )
    return mimic_rates


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)
