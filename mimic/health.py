"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mimic import metrics as _metrics  # noqa: F401  (registers the counters)
from mimic.errors import MimicError
from mimic.migrate import schema_status


class Health(msgspec.Struct, kw_only=True):
    status: str
    reason: str | None = None


@get("/healthz", tags=["operations"], summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    tags=["operations"],
    summary="Readiness: the database answers and the schema is current",
    responses={503: ResponseSpec(data_container=Health, description="Not ready, with a reason")},
)
async def readyz(state: State) -> Response[Health]:
    try:
        async with state.deps.db.connection() as conn:
            status = await schema_status(conn, state.steps)
    except MimicError as exc:
        return Response(Health(status="unavailable", reason=exc.message), status_code=503)
    if not status.current:
        reason = f"schema not current: pending {', '.join(status.pending)}"
        return Response(Health(status="unavailable", reason=reason), status_code=503)
    return Response(Health(status="ok"), status_code=200)


@get("/metrics", tags=["operations"], summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics() -> bytes:
    return generate_latest()
