"""API keys for internal callers: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Two scopes:

- **admin** keys (``MIMIC_API_KEYS``; in dev, also the documented dev key) act for every
  tenant and are the only keys the events API accepts;
- **tenant** keys (``mimic keys create --tenant acme``) act only for their tenant: the tenant
  comes from the key, and a request naming another tenant is refused with 403.

``MIMIC_SERVICE_API_KEY`` is what Mimic sends to inkpass; it is never accepted inbound.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from mimic.core.deps import Deps
from mimic.core.errors import Forbidden, Unauthorized
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


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard: any live key, admin or tenant. Sets ``connection.state.scope``."""
    presented = presented_key(connection) or ""
    deps: Deps = connection.app.state.deps
    if presented and _is_admin_key(deps, presented.encode()):
        connection.state.scope = Scope(key_id(presented), None)
        return
    tenant = await tenant_of(deps.db, presented) if presented else None
    if tenant is None:
        raise Unauthorized()
    connection.state.scope = Scope(key_id(presented), tenant)


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
