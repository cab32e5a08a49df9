"""Who is signed in to the console: an admin key, by its id, in a sealed session cookie.

The cookie is Litestar's client-side session (AES-GCM, so it cannot be read or forged without
the secret), HttpOnly, SameSite=Strict, Secure outside dev, with an expiry. It holds the key's
id, never the key; every request checks that id is still one of the admin keys, so removing a
key from MIMIC_API_KEYS ends its sessions at once. Every form carries the session's CSRF
token, and a POST without it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from litestar import Request
from litestar.middleware.session.client_side import CookieBackendConfig

from mimic.core.keys import key_id
from mimic.core.settings import Settings

#: How long a sign-in lasts.
SESSION_SECONDS = 8 * 3600
COOKIE = "mimic_console"


def session_config(settings: Settings) -> CookieBackendConfig:
    """The cookie's secret is derived from the admin keys: every API process derives the
    same one, and changing the keys ends every session."""
    material = b"\0".join(k.get().encode() for k in settings.admin_api_keys)
    secret = hashlib.sha256(b"mimic-console-session\0" + material).digest()
    return CookieBackendConfig(
        secret=secret,
        key=COOKIE,
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        secure=not settings.is_dev,
        samesite="strict",
    )


def admin_key_id(settings: Settings, presented: str) -> str | None:
    """The id of ``presented`` if it is an admin key (compared in constant time)."""
    matched = False
    for key in settings.admin_api_keys:
        matched |= hmac.compare_digest(presented.encode(), key.get().encode())
    return key_id(presented) if matched else None


def sign_in(request: Request[Any, Any, Any], key: str) -> None:
    request.set_session(
        {"key": key, "csrf": secrets.token_urlsafe(24), "until": time.time() + SESSION_SECONDS}
    )


def signed_in_key(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    """The signed-in admin key's id, if the session is live and the key still an admin's."""
    session = request.session if "session" in request.scope else {}
    key, until = session.get("key"), session.get("until")
    if not isinstance(key, str) or not isinstance(until, int | float) or until < time.time():
        return None
    live = {key_id(k.get()) for k in settings.admin_api_keys}
    return key if key in live else None


def csrf_token(request: Request[Any, Any, Any]) -> str:
    token = request.session.get("csrf") if "session" in request.scope else None
    return token if isinstance(token, str) else ""


def csrf_ok(request: Request[Any, Any, Any], presented: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected) and hmac.compare_digest(expected, presented or "")
