"""Procrastinate wiring: the transactional defer helper, the app factory, retries, the sweep.

``PROCRASTINATE_APP=mimic.jobs.app`` gives the procrastinate CLI Mimic's app. The app is
built on first attribute access (PEP 562), so importing this module reads no environment.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec

import msgspec
import procrastinate
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from mimic.db import Connection, wrap_exceptions
from mimic.deps import Deps
from mimic.errors import DatabaseUnavailable
from mimic.settings import Settings

logger = logging.getLogger(__name__)

QUEUE_WEBHOOKS = "webhooks"
QUEUE_EMAIL = "email"
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_WEBHOOKS, QUEUE_EMAIL, QUEUE_MAINTENANCE)

SWEEP_TASK = "mimic.tasks.retry_stalled_jobs"


class JobToDefer(msgspec.Struct, kw_only=True, frozen=True):
    task_name: str
    queue: str
    args: Mapping[str, Any]
    priority: int = 0
    lock: str | None = None
    scheduled_at: datetime.datetime | None = None


# The one place that knows procrastinate's SQL entry point. If an upgrade renames it,
# tests/integration/test_jobs.py fails before production does.
_DEFER_SQL = """
SELECT procrastinate_defer_jobs_v1(ARRAY(
    SELECT ROW(q, t, p, l, NULL, a::jsonb, s)::procrastinate_job_to_defer_v1
      FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                  $6::timestamptz[]) WITH ORDINALITY AS j(q, t, p, l, a, s, n)
     ORDER BY n
))
"""


# Retry one job only if it is still `doing` on a worker whose heartbeat is stale (or gone).
_RETRY_STALLED_SQL = """
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
"""


async def defer_jobs(conn: Connection, jobs: Sequence[JobToDefer]) -> list[int]:
    """Enqueue jobs on the caller's connection, inside the caller's transaction.

    The jobs exist exactly when the caller's transaction commits; procrastinate's
    trigger NOTIFYs the workers at commit.
    """
    if not jobs:
        return []
    if not conn.is_in_transaction():
        raise RuntimeError("defer_jobs must run inside the caller's transaction")
    with wrap_exceptions():
        ids = await conn.fetchval(
            _DEFER_SQL,
            [j.queue for j in jobs],
            [j.task_name for j in jobs],
            [j.priority for j in jobs],
            [j.lock for j in jobs],
            [json.dumps(dict(j.args)) for j in jobs],
            [j.scheduled_at for j in jobs],
        )
    return list(ids)


def deps_of(context: procrastinate.JobContext) -> Deps:
    deps = context.additional_context.get("deps")
    if not isinstance(deps, Deps):
        raise RuntimeError("Mimic tasks must run in `mimic worker`, which provides deps")
    return deps


class RetryableError(Exception):
    """A transient failure: the job is retried with backoff (or after ``retry_after``)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackoffRetry(BaseRetryStrategy):
    """Exponential backoff with jitter for :class:`RetryableError`, honouring Retry-After.

    The task decides whether to retry (it knows its own attempt budget) by raising
    RetryableError; a database outage is retried too; any other exception fails the job.
    """

    def __init__(self, *, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap

    def delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        ceiling = min(self.cap, self.base * 2**attempts)
        return random.uniform(ceiling / 2, ceiling)

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, DatabaseUnavailable):
            retry_after = None
        elif isinstance(exception, RetryableError):
            retry_after = exception.retry_after
        else:
            return None
        seconds = self.delay(job.attempts, retry_after)
        retry_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        return RetryDecision(retry_at=retry_at)


P = ParamSpec("P")


def survive_shutdown(
    fn: Callable[Concatenate[procrastinate.JobContext, P], Awaitable[None]],
) -> Callable[Concatenate[procrastinate.JobContext, P], Coroutine[Any, Any, None]]:
    """Turn a shutdown's cancellation into a retry, so a job past the grace period is not lost.

    procrastinate cancels in-flight async jobs when the grace period ends (and on a user's
    abort request); only the shutdown case is retried.
    """

    @functools.wraps(fn)
    async def run(context: procrastinate.JobContext, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await fn(context, *args, **kwargs)
        except asyncio.CancelledError:
            if context.abort_reason() == AbortReason.SHUTDOWN:
                raise RetryableError("worker shut down mid-job", retry_after=0) from None
            raise

    return run


def sweep_cron(seconds: int) -> str:
    return "* * * * *" if seconds >= 60 else f"* * * * * */{seconds}"


TaskRegistrar = Callable[[procrastinate.App, Settings], None]


def _register_sweep(app: procrastinate.App, settings: Settings) -> None:
    @app.periodic(cron=sweep_cron(settings.stalled_sweep_seconds))
    @app.task(name=SWEEP_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)
    async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
        db = deps_of(context).db
        stale = settings.worker_stalled_after_seconds
        stalled = await context.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stale)
        retried = 0
        for job in stalled:
            if job.task_name == SWEEP_TASK:
                continue
            # Re-check under the row lock: the job may have finished since it was listed,
            # and procrastinate's retry would also revive a job that has since failed.
            async with db.transaction() as conn:
                if await conn.fetchval(_RETRY_STALLED_SQL, job.id, stale):
                    retried += 1
                    logger.warning("retried stalled job %s (%s)", job.id, job.task_name)
        return retried


def build_app(settings: Settings) -> procrastinate.App:
    """The procrastinate app for the worker and the CLI, with every Mimic task."""
    # Local imports: feature modules import this module for defer_jobs and Deps.
    from mimic.billing.inkpass import register as register_billing
    from mimic.egress.tasks import register as register_egress

    assert settings.database_url is not None, "resolve the database URL first"
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.database_url.get(),
        kwargs={"application_name": "mimic-procrastinate"},
    )
    app = procrastinate.App(connector=connector)
    registrars: list[TaskRegistrar] = [
        _register_sweep,
        register_billing,
        register_egress,
    ]
    for register in registrars:
        register(app, settings)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        from mimic.embedded import resolve_database
        from mimic.settings import Settings

        settings = resolve_database(Settings.from_env(os.environ))
        built = build_app(settings)
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
