"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import msgspec
from litestar import Controller, Litestar, Response, get
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mimic.core import metrics
from mimic.core.db import load_queries
from mimic.core.deps import Deps
from mimic.core.errors import MimicError
from mimic.core.migrate import Step, schema_status

queries = load_queries("mimic.core")


class Health(msgspec.Struct, kw_only=True):
    status: str
    reason: str | None = None


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

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, deps: NamedDependency[Deps]) -> bytes:
        await read_queue_gauges(deps)
        return generate_latest()


async def read_queue_gauges(deps: Deps) -> None:
    """The queue gauges, read from procrastinate's table at each scrape. A database that does
    not answer leaves them out (the rest of /metrics is still served)."""
    try:
        counts = await deps.db.fetch(queries["queue_counts"])
        oldest = await deps.db.fetch(queries["queue_oldest_todo"])
    except MimicError:
        metrics.queue_jobs.clear()
        metrics.queue_oldest_todo.clear()
        return
    metrics.queue_jobs.clear()
    for row in counts:
        metrics.queue_jobs.labels(row["queue_name"], row["status"]).set(row["jobs"])
    metrics.queue_oldest_todo.clear()
    for row in oldest:
        metrics.queue_oldest_todo.labels(row["queue_name"]).set(row["age"] or 0.0)


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

    @get("/metrics", summary="Prometheus metrics of this worker", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self) -> bytes:
        return generate_latest()


def worker_health_app(state: WorkerState) -> Litestar:
    """The worker's own small HTTP surface (``WORKER_HEALTH_PORT``)."""
    return Litestar(
        route_handlers=[WorkerHealthController],
        dependencies={"worker_state": Provide(lambda: state, sync_to_thread=False)},
        openapi_config=None,
        logging_config=None,
    )
