"""The one outbound-HTTP helper: a timeout per call, transport failures named, Retry-After.

Callers decide what a status code means for them; this module only says whether the
request may have reached the server (a failure here is always worth a retry).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class TransportFailure(Exception):
    """No usable response: timed out or the connection failed. Retryable.

    ``certain``: the request never left (no connection: refused, DNS, connect timeout), so
    the server did nothing. Otherwise it may have been received and acted on."""

    def __init__(self, reason: str, *, certain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.certain = certain


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse Retry-After: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After, else the rate-limit draft's ``ratelimit-reset`` (seconds; Resend sends it)."""
    found = retry_after_seconds(response.headers.get("retry-after"), time.time())
    if found is None:
        reset = (response.headers.get("ratelimit-reset") or "").strip()
        found = float(reset) if reset.isdigit() else None
    return found


def is_retryable_status(code: int) -> bool:
    """Worth asking again later: timeouts, rate limits and server errors."""
    return code in (408, 429) or code >= 500


async def request(
    http: httpx.AsyncClient, method: str, url: str, *, timeout: float, **kwargs: Any
) -> httpx.Response:
    try:
        return await http.request(method, url, timeout=timeout, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransportFailure(f"could not connect: {type(exc).__name__}", certain=True) from None
    except httpx.TimeoutException:
        raise TransportFailure(f"timed out after {timeout:g}s") from None
    except httpx.TransportError as exc:
        raise TransportFailure(f"connection error: {type(exc).__name__}") from None
