"""API keys for internal callers: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request
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
    connection.state.api_key_id = key_id(presented)


def key_id(key: bytes) -> str:
    """How logs and the audit log name a key: a fingerprint, never the key itself."""
    return "key_" + hashlib.sha256(key).hexdigest()[:12]


def current_key_id(request: Request[Any, Any, Any]) -> str:
    """The id of the key that authenticated this request (set by ``require_api_key``)."""
    found: str = request.state.api_key_id
    return found
