"""``create_app(settings)``: the only place the HTTP service is wired together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from mimic import __version__
from mimic.deps import open_deps
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
    schema_steps = steps if steps is not None else load_steps()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_deps(settings) as deps:
            app.state.deps = deps
            app.state.steps = schema_steps
            yield

    from mimic.egress.routes import routes as egress_routes
    from mimic.ingress.routes import routes as ingress_routes

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            *ingress_routes(settings),
            *egress_routes(settings),
        ],
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
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    ),
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )
