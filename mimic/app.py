"""``create_app(settings)``: the only place the HTTP service is wired together."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any, TypeVar

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.static_files import create_static_files_router
from litestar.types import (
    ASGIApp,
    ControllerRouterHandler,
    Message,
    Receive,
    Scope,
    Send,
)

from mimic import __version__
from mimic.billing import inkpass
from mimic.billing.controller import BillingController
from mimic.console.controller import console_routes
from mimic.core.auth import document_limits
from mimic.core.deps import Deps, open_deps
from mimic.core.errors import ErrorBody, MimicError, TooManyRequests
from mimic.core.health import HealthController, QueueGauges
from mimic.core.logs import bound, mask_addresses
from mimic.core.migrate import Step, load_steps
from mimic.core.settings import Settings
from mimic.email import tracking
from mimic.email.controller import CONTROLLERS as EMAIL_CONTROLLERS
from mimic.email.rendering import Templates
from mimic.events import gateway, ingest, routes_file
from mimic.events.controller import GatewayAdminController
from mimic.events.gateway_controller import CONTROLLERS as GATEWAY_CONFIG_CONTROLLERS
from mimic.events.routes import Router
from mimic.webhooks import controller as webhooks
from mimic.webhooks import openapi as webhooks_openapi

logger = logging.getLogger(__name__)


def router() -> Router:
    """Mimic's own handlers (email events to tracking) beside the stored routes, and the
    billing domain's inkpass body."""
    inkpass.register()
    return Router(tracking.RULES)


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The one exception-to-response function."""
    headers: dict[str, str] = {}
    if isinstance(exc, MimicError):
        status, code, detail, headers = exc.status_code, exc.code, exc.message, exc.headers
        if isinstance(exc, TooManyRequests):
            headers = {**headers, "Retry-After": exc.retry_after_header()}
    elif isinstance(exc, RecursionError):
        # Only parsing a request body recurses without bound (msgspec, on JSON nested
        # thousands deep): the caller's input, so a 400, not our fault.
        status, code, detail = 400, "invalid_json", "JSON is nested too deeply"
    elif isinstance(exc, HTTPException):
        status, detail = exc.status_code, exc.detail
        headers = dict(exc.headers or {})  # e.g. a 405's Allow
        code = {
            400: "bad_request",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(status, "http_error")
        if exc.extra and status == 400 and _body_missing(exc.extra):
            code = "body_required"
            detail = (
                f"{request.method} {request.url.path} needs a JSON body "
                "(Content-Type: application/json); /docs shows its fields and an example"
            )
        elif exc.extra and status == 400:
            detail = f"{detail}: {msgspec.json.encode(exc.extra).decode()}"
    else:
        logger.exception(
            "unhandled error on %s %s", request.method, mask_addresses(request.url.path)
        )
        status, code, detail = 500, "internal_error", "Internal error."
    return Response(ErrorBody(error=code, detail=detail), status_code=status, headers=headers)


def _body_missing(extra: object) -> bool:
    """Litestar's validation error for a request without a body: the `data` argument (the
    body) itself is missing, which it reports as a KeyError's text."""
    return isinstance(extra, list) and any(
        isinstance(e, dict)
        and e.get("key") == "data"
        and e.get("source") == "body"
        and e.get("message") == "'data'"
        for e in extra
    )


#: An X-Request-ID Mimic accepts from the caller (else it makes one).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
access_log = logging.getLogger("mimic.access")


def request_ids(app: ASGIApp) -> ASGIApp:
    """Every request gets an id: the caller's valid ``X-Request-ID``, else a new one. It is
    returned in the response's ``X-Request-ID``, is on every log line of the request, and
    ends the request's access-log line (probes of /healthz, /readyz, /metrics at DEBUG)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with bound(request_id=request_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                found = scope.get("state", {}).get("scope")
                key = f" key={found.key_id}" if found is not None else ""
                access_log.log(
                    logging.DEBUG if scope["path"] in _QUIET else logging.INFO,
                    "%s %s -> %d in %.1f ms%s",
                    scope["method"],
                    # Suppression paths name an address: logs keep only its shape.
                    mask_addresses(scope["path"]),
                    status,
                    (time.perf_counter() - started) * 1000,
                    key,
                )

    return middleware


def _provide_deps(state: State) -> Deps:
    deps: Deps = state.deps
    return deps


T = TypeVar("T")


def _after_deps(value: T) -> Callable[[Deps], T]:
    def provide(deps: NamedDependency[Deps]) -> T:
        return value

    return provide


#: The Swagger UI's own files, from the swagger-ui-py package: /docs works without internet.
DOCS_ASSETS = "/docs/assets"
_SWAGGER_DIR = pathlib.Path(str(resources.files("swagger_ui") / "static"))

DESCRIPTION = """\
Mimic is a webhook gateway and a transactional email service on Postgres alone.

- **Ingress:** Stripe, Resend (Svix) and Postmark webhooks are verified, stored with their raw
  body, and routed to internal services (inkpass, or any destination a route names) with
  retries. A 2xx means the event is committed.
- **Egress:** email from Jinja templates through Resend, Postmark or SMTP, tracked until it is
  delivered or fails; tenants can bring their own provider keys (BYOK).

Internal routes need an API key (`X-API-Key` or `Authorization: Bearer`): an **admin** key
(`MIMIC_API_KEYS`; `mimic-dev-key` in dev) or a **tenant** key from `mimic keys create`, which
acts only for its tenant. Every error is `{"error": "<code>", "detail": "<sentence>"}`.
"""

TAGS = [
    Tag(name="webhooks", description="Provider webhooks: verified by signature, no API key."),
    Tag(
        name="gateway admin",
        description="Stored events and deliveries: list, replay, retry. Admin keys only.",
    ),
    Tag(
        name="gateway config",
        description=(
            "Destinations (internal services that receive deliveries) and routes (which "
            "events go where, filtered, with what body). Changes apply to the next event; "
            "items from MIMIC_ROUTES_FILE are read-only here. Admin keys only."
        ),
    ),
    Tag(
        name="notifications",
        description="Send email from templates and follow each message to delivered or failed.",
    ),
    Tag(
        name="byok",
        description=(
            "Bring your own keys: a tenant's Resend, Postmark or SMTP credential, sealed at rest "
            "and never shown again. A tenant key manages only its own tenant's."
        ),
    ),
    Tag(
        name="tenants",
        description=(
            "What an admin allows a tenant: the domains its keys may send from besides its "
            "credentials', and whether it may send through the platform's providers. Admin "
            "keys only."
        ),
    ),
    Tag(
        name="suppressions",
        description=(
            "Addresses a tenant no longer mails: added on a hard bounce, a complaint or a "
            "provider's suppression; a send to one is refused with 422 recipient_suppressed."
        ),
    ),
    Tag(
        name="billing",
        description=(
            "Stripe Checkout and Customer Portal sessions: the start of the billing round "
            "trip whose webhooks the gateway routes to inkpass."
        ),
    ),
    Tag(name="operations", description="Liveness, readiness and Prometheus metrics."),
]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Mimic",
        version=__version__,
        description=DESCRIPTION,
        tags=TAGS,
        path="/docs",
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
                "bearer": SecurityScheme(type="http", scheme="bearer"),
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' href='{DOCS_ASSETS}/favicon-32x32.png'>",
            ),
            JsonRenderPlugin(),
        ],
    )


def create_app(settings: Settings, *, steps: list[Step] | None = None) -> Litestar:
    if settings.database.url is None:
        raise ValueError("create_app needs settings with a database URL")
    schema_steps = steps if steps is not None else load_steps()
    templates = Templates()
    routing = router()
    routes_path = settings.webhooks.routes_file
    # Checked before anything starts: an error names the file, the line and the field.
    routes = routes_file.load(routes_path, routing, os.environ) if routes_path else None

    key = settings.billing.stripe_secret_key
    if not settings.is_dev and key is not None and key.get().startswith("sk_test_"):
        logger.warning("STRIPE_SECRET_KEY is a test-mode key (sk_test_...) in production")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_deps(settings) as deps:
            app.state.deps = deps
            await gateway.sync_settings_destination(deps.db, settings)
            await ingest.prepare_partitions(deps.db, settings.retention.event_partition)
            if routes_path and routes is not None:
                await routes_file.sync(deps.db, deps.keyring, routes_path, routes)
            yield

    handlers: list[ControllerRouterHandler] = [
        HealthController,
        create_static_files_router(
            DOCS_ASSETS, directories=[_SWAGGER_DIR], include_in_schema=False, name="docs-assets"
        ),
        *webhooks.webhook_routes(routing, dev=settings.is_dev),
        GatewayAdminController,
        *GATEWAY_CONFIG_CONTROLLERS,
        *console_routes(settings),
        BillingController,
        *EMAIL_CONTROLLERS,
    ]
    app = Litestar(
        route_handlers=handlers,
        dependencies={
            "deps": Provide(_provide_deps, sync_to_thread=False),
            # Each takes `deps` (unused) so Litestar resolves it after deps, alone: it runs a
            # level of two or more dependencies in an anyio task group, which cost about a
            # tenth of a webhook's CPU (a handler uses deps and at most one of these).
            "steps": Provide(_after_deps(schema_steps), sync_to_thread=False),
            "templates": Provide(_after_deps(templates), sync_to_thread=False),
            "routing": Provide(_after_deps(routing), sync_to_thread=False),
            # One per app (one per process): scrapes share its cached read of the queues.
            "queue_gauges": Provide(
                _after_deps(QueueGauges(settings.server.metrics_queue_cache_seconds)),
                sync_to_thread=False,
            ),
        },
        lifespan=[lifespan],
        state=State(),
        exception_handlers={Exception: error_response},
        middleware=[request_ids],
        request_max_body_size=settings.webhooks.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    webhooks_openapi.document(app.openapi_schema, dev=settings.is_dev)
    document_limits(app.openapi_schema)
    return app
