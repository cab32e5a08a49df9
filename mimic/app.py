"""``create_app(settings)``: the only place the HTTP service is wired together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin

from mimic import __version__
from mimic.db import Database, create_pool
from mimic.deps import Deps
from mimic.errors import ErrorBody, MimicError
from mimic.health import healthz, metrics, readyz
from mimic.migrate import Step, load_steps
from mimic.settings import Settings

logger = logging.getLogger(__name__)


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The one exception-to-response function."""
    if isinstance(exc, MimicError):
        status, code, detail = exc.status_code, exc.code, exc.message
    elif isinstance(exc, HTTPException):
        status, detail = exc.status_code, exc.detail
        code = {
            400: "bad_request",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(status, "http_error")
        if exc.extra and status == 400:
            detail = f"{detail}: {msgspec.json.encode(exc.extra).decode()}"
    else:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        status, code, detail = 500, "internal_error", "Internal error."
    return Response(ErrorBody(error=code, detail=detail), status_code=status)


def create_app(
    settings: Settings,
    *,
    steps: list[Step] | None = None,
) -> Litestar:
    if settings.database_url is None:
        raise ValueError("create_app needs settings with a database URL")
    dsn = settings.database_url.get()
    schema_steps = steps if steps is not None else load_steps()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(dsn, max_size=settings.db_pool_max_size)
        http = httpx.AsyncClient(timeout=settings.inkpass_timeout_seconds)
        try:
            app.state.deps = Deps(settings=settings, db=Database(pool), http=http)
            app.state.steps = schema_steps
            yield
        finally:
            await http.aclose()
            await pool.close()

    from mimic.ingress.routes import routes as ingress_routes

    return Litestar(
        route_handlers=[healthz, readyz, metrics, *ingress_routes(settings)],
        lifespan=[lifespan],
        state=State(),
        exception_handlers={Exception: error_response},
        request_max_body_size=settings.webhook_max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Mimic",
            version=__version__,
            description=(
                "Webhook gateway (Stripe, Resend) and transactional email on Postgres alone."
            ),
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )
