"""API keys for internal callers: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from mimic.core.deps import Deps
from mimic.core.errors import Unauthorized


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard. Compares against every key, in constant time, without short-circuit."""
    presented = (presented_key(connection) or "").encode()
    deps: Deps = connection.app.state.deps
    accepted = deps.settings.accepted_api_keys
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(presented, key.get().encode())
    if not presented or not matched:
        raise Unauthorized()
