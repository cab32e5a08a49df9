"""The worker's housekeeping, run by a real worker: old jobs go, the sweep leaves no trail."""

from __future__ import annotations

import json

import asyncpg

from tests.helpers import make_settings, running_worker, wait_for_value

DEFER = """
SELECT procrastinate_defer_jobs_v1(ARRAY[
    ROW('maintenance', $1, 0, NULL, NULL, $2::jsonb, NULL)::procrastinate_job_to_defer_v1
])
"""


async def test_the_stalled_job_sweep_leaves_no_succeeded_jobs_behind(
    database_url: str, db: asyncpg.Connection
) -> None:
    sweeps = "FROM procrastinate_jobs WHERE task_name = 'mimic.tasks.retry_stalled_jobs'"
    async with running_worker(make_settings(database_url, STALLED_SWEEP_SECONDS="1")):
        first = await wait_for_value(db, f"SELECT min(id) {sweeps}", until=bool)
        # Each run is a new job (a higher id): wait for the fourth, however slow the machine.
        await wait_for_value(
            db,
            f"SELECT max(id) {sweeps} AND status = 'succeeded'",
            until=lambda last: last is not None and last >= first + 3,
            within=30,
        )
        runs = await db.fetchval(f"SELECT count(*) {sweeps}")
    # At least four runs happened; at most the latest two rows remain (procrastinate keeps a
    # reference to the last one it deferred).
    assert 1 <= runs <= 2


async def test_remove_old_jobs_deletes_finished_jobs_past_the_retention(
    database_url: str, db: asyncpg.Connection
) -> None:
    [[old], [young]] = [
        await db.fetchval(DEFER, "tests.nothing", json.dumps({"n": n})) for n in (1, 2)
    ]
    await db.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = ANY($1)", [old, young]
    )
    await db.execute(
        "UPDATE procrastinate_events SET at = now() - interval '20 days' WHERE job_id = $1", old
    )
    [cleanup] = await db.fetchval(
        DEFER, "mimic.tasks.remove_old_jobs", json.dumps({"timestamp": 0})
    )
    async with running_worker(make_settings(database_url, JOB_RETENTION_DAYS="14")):
        await wait_for_value(
            db,
            "SELECT status::text FROM procrastinate_jobs WHERE id = $1",
            cleanup,
            until=lambda status: status == "succeeded",
        )
    left = {
        r["id"]
        for r in await db.fetch(
            "SELECT id FROM procrastinate_jobs WHERE id = ANY($1)", [old, young]
        )
    }
    assert left == {young}
