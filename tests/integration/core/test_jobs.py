"""The transactional defer helper, against real Postgres and a real procrastinate worker."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import procrastinate
import pytest
from procrastinate.schema import SchemaManager

from mimic.core.db import Connection
from mimic.core.jobs import QUEUE_MAINTENANCE, JobToDefer, defer_jobs, deps_of, queries
from mimic.core.migrate import MIGRATIONS_DIR
from mimic.core.settings import Settings
from mimic.worker import build_app
from tests.helpers import running_worker, wait_for

PROBE_TASK = "tests.record_probe"


def app_with_probe(settings: Settings) -> procrastinate.App:
    app = build_app(settings)

    @app.task(name=PROBE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)
    async def record_probe(context: procrastinate.JobContext, value: str) -> None:
        await deps_of(context).db.execute("INSERT INTO probe (value) VALUES ($1)", value)

    return app


def probe_job(value: str) -> JobToDefer:
    return JobToDefer(task_name=PROBE_TASK, queue=QUEUE_MAINTENANCE, args={"value": value})


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute("CREATE TABLE probe (value text)")
    yield connection
    await connection.close()


async def test_committed_job_is_run_by_a_real_worker(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    async with conn.transaction():
        ids = await defer_jobs(Connection(conn), [probe_job("committed"), probe_job("second")])
    assert len(ids) == 2
    rows = await conn.fetch(
        "SELECT task_name, queue_name, args FROM procrastinate_jobs WHERE id = ANY($1)", ids
    )
    assert {r["task_name"] for r in rows} == {PROBE_TASK}

    async with running_worker(settings, app_with_probe(settings)):

        async def both_ran() -> bool:
            return bool(await conn.fetchval("SELECT count(*) = 2 FROM probe"))

        await wait_for(both_ran)
    values = {r["value"] for r in await conn.fetch("SELECT value FROM probe")}
    assert values == {"committed", "second"}
    statuses = await conn.fetch("SELECT status FROM procrastinate_jobs WHERE id = ANY($1)", ids)
    assert {r["status"] for r in statuses} == {"succeeded"}


async def test_rolled_back_job_never_exists(conn: asyncpg.Connection) -> None:
    transaction = conn.transaction()
    await transaction.start()
    await defer_jobs(Connection(conn), [probe_job("rolled back")])
    await transaction.rollback()
    count = await conn.fetchval(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = $1", PROBE_TASK
    )
    assert count == 0


async def test_defer_outside_a_transaction_is_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        await defer_jobs(Connection(conn), [probe_job("autocommit")])


def test_defer_sql_names_a_function_the_installed_procrastinate_defines() -> None:
    # A procrastinate upgrade that renames or retypes the entry point fails here
    # (and in the worker test above), not in production.
    defer_function = (MIGRATIONS_DIR / "0007_defer_function.sql").read_text()
    names = set(
        re.findall(r"procrastinate_\w+_v\d+", defer_function + queries["retry_stalled_job"])
    )
    assert names == {
        "procrastinate_defer_jobs_v1",
        "procrastinate_job_to_defer_v1",
        "procrastinate_retry_job_v2",
    }
    schema = SchemaManager.get_schema()
    assert "CREATE FUNCTION procrastinate_defer_jobs_v1(" in schema
    assert "CREATE TYPE procrastinate_job_to_defer_v1 AS (" in schema
    assert "CREATE FUNCTION procrastinate_retry_job_v2(" in schema
