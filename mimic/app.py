"""``create_app(settings)``: the only place the HTTP service is wired together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from mimic import __version__
from mimic.billing import inkpass
from mimic.core.deps import Deps, open_deps
from mimic.core.errors import ErrorBody, MimicError
from mimic.core.health import HealthController
from mimic.core.migrate import Step, load_steps
from mimic.core.settings import Settings
from mimic.email import tracking
from mimic.email.controller import CONTROLLERS as EMAIL_CONTROLLERS
from mimic.email.rendering import Templates
from mimic.events.controller import GatewayAdminController
from mimic.events.routing import RoutingTable
from mimic.webhooks.controller import StripeTestController, WebhookController

logger = logging.getLogger(__name__)


def routing_table() -> RoutingTable:
    """Every domain's routing rules: Stripe events to inkpass, email events to tracking."""
    return RoutingTable(inkpass.RULES, tracking.RULES)


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The one exception-to-response function."""
    if isinstance(exc, MimicError):
        status, code, detail = exc.status_code, exc.code, exc.message
    elif isinstance(exc, RecursionError):
        # Only parsing a request body recurses without bound (msgspec, on JSON nested
        # thousands deep): the caller's input, so a 400, not our fault.
        status, code, detail = 400, "invalid_json", "JSON is nested too deeply"
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


def _provide_deps(state: State) -> Deps:
    deps: Deps = state.deps
    return deps


def create_app(settings: Settings, *, steps: list[Step] | None = None) -> Litestar:
    if settings.database.url is None:
        raise ValueError("create_app needs settings with a database URL")
    schema_steps = steps if steps is not None else load_steps()
    templates = Templates()
    routing = routing_table()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_deps(settings) as deps:
            app.state.deps = deps
            yield

    handlers: list[ControllerRouterHandler] = [
        HealthController,
        WebhookController,
        GatewayAdminController,
        *EMAIL_CONTROLLERS,
    ]
    if settings.is_dev:
        handlers.append(StripeTestController)

    return Litestar(
        route_handlers=handlers,
        dependencies={
            "deps": Provide(_provide_deps, sync_to_thread=False),
            "steps": Provide(lambda: schema_steps, sync_to_thread=False),
            "templates": Provide(lambda: templates, sync_to_thread=False),
            "routing": Provide(lambda: routing, sync_to_thread=False),
        },
        lifespan=[lifespan],
        state=State(),
        exception_handlers={Exception: error_response},
        request_max_body_size=settings.webhooks.max_body_bytes,
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
