"""Jobs: the transactional defer helper, queue names, retries, and the task wrapper.

Tasks live on each domain's procrastinate ``Blueprint``; ``mimic.worker`` adds them all.
A task body is written as ``async def body(deps, **args)`` and decorated with
:func:`job_body`, which hands it the process's resources and turns a shutdown or a database
outage into a retry instead of a lost job.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import json
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec

import msgspec
import procrastinate
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from mimic.core.db import Connection, load_queries
from mimic.core.deps import Deps
from mimic.core.errors import DatabaseUnavailable, ExpectedJobError
from mimic.core.logs import bound

QUEUE_WEBHOOKS = "webhooks"
QUEUE_EMAIL = "email"
QUEUE_MAINTENANCE = "maintenance"
#: Every Mimic queue (what /metrics reports, 0 when idle).
QUEUES = (QUEUE_WEBHOOKS, QUEUE_EMAIL, QUEUE_MAINTENANCE)

queries = load_queries("mimic.core")


class JobToDefer(msgspec.Struct, kw_only=True, frozen=True):
    task_name: str
    queue: str
    args: Mapping[str, Any]
    priority: int = 0
    lock: str | None = None
    scheduled_at: datetime.datetime | None = None


async def defer_jobs(conn: Connection, jobs: Sequence[JobToDefer]) -> list[int]:
    """Enqueue jobs on the caller's connection, inside the caller's transaction.

    The jobs exist exactly when the caller's transaction commits; procrastinate's
    trigger NOTIFYs the workers at commit.
    """
    if not jobs:
        return []
    if not conn.is_in_transaction():
        raise RuntimeError("defer_jobs must run inside the caller's transaction")
    ids = await conn.fetchval(
        queries["defer_jobs"],
        [j.queue for j in jobs],
        [j.task_name for j in jobs],
        [j.priority for j in jobs],
        [j.lock for j in jobs],
        [json.dumps(dict(j.args)) for j in jobs],
        [j.scheduled_at for j in jobs],
    )
    return list(ids)


_current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "mimic_job_id", default=None
)


def current_job_id() -> int | None:
    """The id of the procrastinate job whose body is running (None outside a job)."""
    return _current_job.get()


def deps_of(context: procrastinate.JobContext) -> Deps:
    deps = context.additional_context.get("deps")
    if not isinstance(deps, Deps):
        raise RuntimeError("Mimic tasks must run in `mimic worker`, which provides deps")
    return deps


class RetryableError(ExpectedJobError):
    """A transient failure: the job runs again after ``retry_after`` seconds (the task
    computes the delay; it knows its backoff settings and attempt budget)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Backoff(msgspec.Struct, frozen=True):
    """Exponential backoff with jitter, honouring a server's Retry-After up to the cap."""

    base: float
    cap: float

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` earlier failures (0 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        ceiling = min(self.cap, self.base * 2 ** max(failures, 0))
        return random.uniform(ceiling / 2, ceiling)


class RetryWhenAsked(BaseRetryStrategy):
    """Retry a job only when its task raised :class:`RetryableError`, after its delay.

    The task decides (it knows its own attempt budget and backoff settings); any other
    exception fails the job.
    """

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if not isinstance(exception, RetryableError):
            return None
        seconds = max(exception.retry_after, 0.0)
        retry_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        return RetryDecision(retry_at=retry_at)


#: The retry strategy of every Mimic task.
RETRY = RetryWhenAsked()

P = ParamSpec("P")


def job_body(
    fn: Callable[Concatenate[Deps, P], Awaitable[None]],
) -> Callable[Concatenate[procrastinate.JobContext, P], Coroutine[Any, Any, None]]:
    """Run ``fn(deps, ...)`` as a task body (register it with ``pass_context=True``).

    A shutdown's cancellation (the grace period ran out) and a database outage become
    retries, so neither loses the job. A user's abort request still cancels it.
    """

    @functools.wraps(fn)
    async def run(context: procrastinate.JobContext, /, *args: P.args, **kwargs: P.kwargs) -> None:
        deps = deps_of(context)
        # Every log line of the job names it, and what it is about (notification_id,
        # delivery_id, ...: the task's *_id arguments).
        ids = {k: str(v) for k, v in kwargs.items() if k.endswith("_id")}
        job_id = str(context.job.id) if context.job else None
        token = _current_job.set(context.job.id if context.job else None)
        try:
            with bound(job_id=job_id, **ids):
                await fn(deps, *args, **kwargs)
        except asyncio.CancelledError:
            if context.abort_reason() == AbortReason.SHUTDOWN:
                raise RetryableError("worker shut down mid-job", retry_after=0) from None
            raise
        except DatabaseUnavailable:
            worker = deps.settings.worker
            backoff = Backoff(base=worker.outage_retry_seconds, cap=60.0)
            attempts = context.job.attempts if context.job else 0
            raise RetryableError(
                "database unavailable", retry_after=backoff.delay(attempts)
            ) from None
        finally:
            _current_job.reset(token)

    return run
