"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from litestar import Controller, Litestar, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mimic.core import metrics
from mimic.core.auth import presented_key
from mimic.core.db import Database, load_queries
from mimic.core.deps import Deps
from mimic.core.errors import ErrorBody, MimicError, Unauthorized, error_spec
from mimic.core.jobs import QUEUES
from mimic.core.migrate import Step, schema_status
from mimic.core.settings import Secret

queries = load_queries("mimic.core")

#: The job statuses the queue gauges count (final ones are left out: counting them would read
#: the whole table).
QUEUE_STATUSES = ("todo", "doing")

METRICS_ERRORS = {401: error_spec("METRICS_API_KEY is set and the request does not carry it")}


class Health(msgspec.Struct, kw_only=True):
    status: str
    reason: str | None = None


class QueueGauges:
    """The queue gauges of /metrics, read from procrastinate's table at most once per
    ``interval`` seconds per process: scrapes in between (any number, from any scraper) are
    served the last read, and scrapes that arrive during a read wait for that same read, so
    a burst of scrapes costs one pair of queries.

    Every Mimic queue has a sample for each status, 0 when idle, and an oldest-job age of 0
    when it has no job due: alerts and ``rate()`` see a series from the first scrape. A
    database that does not answer leaves the gauges out until a read succeeds (the rest of
    /metrics is still served)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._read_at: float | None = None
        self._reading: asyncio.Task[None] | None = None

    async def refresh(self, db: Database) -> None:
        if self._reading is None:
            if self._read_at is not None and self._clock() - self._read_at < self.interval:
                return
            self._reading = asyncio.create_task(self._read(db), name="mimic queue gauges")
        # Shielded: a scraper that hangs up does not cancel the read the others wait for.
        await asyncio.shield(self._reading)

    async def _read(self, db: Database) -> None:
        try:
            counts = await db.fetch(queries["queue_counts"])
            oldest = await db.fetch(queries["queue_oldest_todo"])
        except MimicError:
            metrics.queue_jobs.clear()
            metrics.queue_oldest_todo.clear()
        else:
            _set_queue_gauges(counts, oldest)
        finally:
            # A failed read waits out the interval too: a database in trouble is not asked
            # again at every scrape.
            self._read_at = self._clock()
            self._reading = None


def _set_queue_gauges(counts: Sequence[Any], oldest: Sequence[Any]) -> None:
    # No await in here: a scrape never sees the gauges half set.
    metrics.queue_jobs.clear()
    for queue in QUEUES:
        for status in QUEUE_STATUSES:
            metrics.queue_jobs.labels(queue, status).set(0)
    for row in counts:
        metrics.queue_jobs.labels(row["queue_name"], row["status"]).set(row["jobs"])
    metrics.queue_oldest_todo.clear()
    for queue in QUEUES:
        metrics.queue_oldest_todo.labels(queue).set(0)
    for row in oldest:
        metrics.queue_oldest_todo.labels(row["queue_name"]).set(row["age"] or 0.0)


def require_metrics_key(request: Request[Any, Any, Any], expected: Secret | None) -> None:
    """401 unless the request carries ``METRICS_API_KEY`` (when it is set), compared in
    constant time."""
    if expected is None:
        return
    presented = (presented_key(request) or "").encode()
    if not hmac.compare_digest(presented, expected.get().encode()):
        raise Unauthorized(
            "/metrics needs METRICS_API_KEY (Authorization: Bearer <key> or X-API-Key)"
        )


async def scrape(request: Request[Any, Any, Any], deps: Deps, gauges: QueueGauges) -> bytes:
    """/metrics of the API and of the worker alike: the key first (a refused scrape reads
    nothing), then the queue gauges (cached), then every metric of this process."""
    require_metrics_key(request, deps.settings.server.metrics_api_key)
    await gauges.refresh(deps.db)
    return generate_latest()


class HealthController(Controller):
    tags = ["operations"]

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Readiness: the database answers and the schema is current",
        responses={
            503: ResponseSpec(
                data_container=Health,
                description="Not ready, with a reason",
                generate_examples=False,
            )
        },
    )
    async def readyz(
        self, deps: NamedDependency[Deps], steps: NamedDependency[list[Step]]
    ) -> Response[Health]:
        try:
            async with deps.db.connection() as conn:
                status = await schema_status(conn, steps)
        except MimicError as exc:
            return Response(Health(status="unavailable", reason=exc.message), status_code=503)
        if not status.current:
            reason = f"schema not current: pending {', '.join(status.pending)}"
            return Response(Health(status="unavailable", reason=reason), status_code=503)
        return Response(Health(status="ok"), status_code=200)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        description=(
            "With METRICS_API_KEY set, only for that key (`Authorization: Bearer` or "
            "`X-API-Key`). The queue gauges are read at most once per "
            "METRICS_QUEUE_CACHE_SECONDS."
        ),
        media_type=CONTENT_TYPE_LATEST,
        responses=METRICS_ERRORS,
    )
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        queue_gauges: NamedDependency[QueueGauges],
    ) -> bytes:
        return await scrape(request, deps, queue_gauges)


class WorkerState:
    """What a worker process's /readyz reports: connected to the database, or why not."""

    def __init__(self) -> None:
        self.reason: str | None = "starting"

    @property
    def ready(self) -> bool:
        return self.reason is None


class WorkerHealthController(Controller):
    tags = ["operations"]

    @get("/healthz", summary="Liveness: the worker process answers")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", summary="Readiness: the worker is connected and taking jobs")
    async def readyz(self, worker_state: NamedDependency[WorkerState]) -> Response[Health]:
        if worker_state.ready:
            return Response(Health(status="ok"), status_code=200)
        return Response(Health(status="unavailable", reason=worker_state.reason), status_code=503)

    @get(
        "/metrics",
        summary="Prometheus metrics of this worker",
        media_type=CONTENT_TYPE_LATEST,
        responses=METRICS_ERRORS,
    )
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        queue_gauges: NamedDependency[QueueGauges],
    ) -> bytes:
        return await scrape(request, deps, queue_gauges)


def _error_body(request: Request[Any, Any, Any], exc: MimicError) -> Response[ErrorBody]:
    """Mimic's error body, as the API answers it (the worker's surface has few errors: 401)."""
    return Response(
        ErrorBody(error=exc.code, detail=exc.message),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def worker_health_app(state: WorkerState, deps: Deps) -> Litestar:
    """The worker's own small HTTP surface (``WORKER_HEALTH_PORT``): its /metrics is the
    API's, METRICS_API_KEY and the queue gauges (read by this process at most once per
    METRICS_QUEUE_CACHE_SECONDS) included."""
    gauges = QueueGauges(deps.settings.server.metrics_queue_cache_seconds)
    return Litestar(
        route_handlers=[WorkerHealthController],
        dependencies={
            "worker_state": Provide(lambda: state, sync_to_thread=False),
            "deps": Provide(lambda: deps, sync_to_thread=False),
            "queue_gauges": Provide(lambda: gauges, sync_to_thread=False),
        },
        exception_handlers={MimicError: _error_body},
        openapi_config=None,
        logging_config=None,
    )
