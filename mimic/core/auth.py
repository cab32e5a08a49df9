"""API keys for internal callers: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Two scopes:

- **admin** keys (``MIMIC_API_KEYS``; in dev, also the documented dev key) act for every
  tenant and are the only keys the events API accepts;
- **tenant** keys (``mimic keys create --tenant acme``) act only for their tenant: the tenant
  comes from the key, and a request naming another tenant is refused with 403.

``MIMIC_SERVICE_API_KEY`` is what Mimic sends to inkpass; it is never accepted inbound.

Every key has a request rate (``API_RATE_PER_SECOND``/``API_BURST`` for tenant keys,
``API_ADMIN_*`` for admin keys), shared by every API process: a token bucket per key id in
Postgres (``ratelimit.take``), checked by the same guards, so every authenticated route has
it and the webhook receivers and operator endpoints, which have no key, do not.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from mimic.core import ratelimit
from mimic.core.deps import Deps
from mimic.core.errors import (
    DatabaseUnavailable,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    whole_seconds,
)
from mimic.core.keys import key_id, tenant_of

logger = logging.getLogger(__name__)


class Scope(msgspec.Struct, frozen=True):
    """Who a request acts as: the key's id, and its tenant (None for an admin key)."""

    key_id: str
    tenant_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def tenant(self, asked: str | None) -> str | None:
        """The tenant a request acts for. An admin key acts for the tenant it names (None is
        the platform); a tenant key for its own, and naming another is 403."""
        if self.tenant_id is None:
            return asked
        if asked is not None and asked != self.tenant_id:
            logger.warning(
                "key %s (tenant %s) refused for another tenant", self.key_id, self.tenant_id
            )
            raise Forbidden(
                "this key acts only for its own tenant; omit tenant_id or use an admin key",
                code="tenant_mismatch",
            )
        return self.tenant_id

    def require_admin(self) -> None:
        """403 ``admin_key_required`` for a tenant key (in a handler, where the refusal can
        be audited; ``require_admin_key`` is the same check as a guard)."""
        if not self.is_admin:
            logger.warning("tenant key %s refused on an admin route", self.key_id)
            raise Forbidden(
                "this route needs an admin key (MIMIC_API_KEYS)", code="admin_key_required"
            )


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


def _is_admin_key(deps: Deps, presented: bytes) -> bool:
    """Compares against every admin key, in constant time, without short-circuit."""
    matched = False
    for key in deps.settings.admin_api_keys:
        matched |= hmac.compare_digest(presented, key.get().encode())
    return matched


#: Where the per-key request buckets live in ``send_rate_buckets``: this and the key's id.
API_BUCKET = "api:"


async def check_rate(deps: Deps, scope: Scope) -> None:
    """429 ``rate_limited`` when the key has no token left; a refused request takes none.
    One statement per request (committed without a disk flush). If the database is away the
    request goes on: a route that needs it answers 503 itself, and one that does not (an
    admin key rendering a preview) keeps working."""
    server = deps.settings.server
    if scope.is_admin:
        rate, burst = server.api_admin_rate_per_second, server.api_admin_burst
        names = "API_ADMIN_RATE_PER_SECOND and API_ADMIN_BURST"
    else:
        rate, burst = server.api_rate_per_second, server.api_burst
        names = "API_RATE_PER_SECOND and API_BURST"
    if not rate:
        return
    try:
        wait = await ratelimit.take(
            deps.db, API_BUCKET + scope.key_id, rate, capacity=burst, or_nothing=True
        )
    except DatabaseUnavailable:
        return
    if wait > 0:
        raise TooManyRequests(
            f"key {scope.key_id} is over its limit of {rate:g} requests per second (bursts of "
            f"{burst}; {names}): retry in {whole_seconds(wait)} s (Retry-After); spread "
            "requests out, or send many emails in one batch request",
            code="rate_limited",
            retry_after=wait,
        )


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard: any live key, admin or tenant, within its request rate. Sets
    ``connection.state.scope``."""
    presented = presented_key(connection) or ""
    deps: Deps = connection.app.state.deps
    if presented and _is_admin_key(deps, presented.encode()):
        scope = Scope(key_id(presented), None)
    else:
        tenant = await tenant_of(deps.db, presented) if presented else None
        if tenant is None:
            raise Unauthorized()
        scope = Scope(key_id(presented), tenant)
    # A request is counted once, however many guards check its key.
    counted = getattr(connection.state, "scope", None) == scope
    connection.state.scope = scope
    if not counted:
        await check_rate(deps, scope)


async def require_admin_key(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: an admin key only (a tenant key is 403, no key is 401)."""
    await require_api_key(connection, handler)
    scope: Scope = connection.state.scope
    scope.require_admin()


def scope_of(request: Request[Any, Any, Any]) -> Scope:
    """The scope of the key that authenticated this request (set by the guards)."""
    found: Scope = request.state.scope
    return found


def current_key_id(request: Request[Any, Any, Any]) -> str:
    return scope_of(request).key_id


_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    description="Whole seconds to wait before retrying",
)


def document_limits(openapi: OpenAPI) -> None:
    """Every operation that takes a key documents the key's 429 (an operation documenting
    its own 429, such as a send's quota, keeps its text), each with its Retry-After."""
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None or not operation.security or operation.responses is None:
                continue
            found = operation.responses.get("429")
            if not isinstance(found, OpenAPIResponse):
                found = operation.responses["429"] = OpenAPIResponse(
                    description="Over this key's request rate (rate_limited); nothing was done",
                    content={
                        "application/json": OpenAPIMediaType(
                            schema=Reference(ref="#/components/schemas/ErrorBody")
                        )
                    },
                )
            found.headers = {**(found.headers or {}), "Retry-After": _RETRY_AFTER}
