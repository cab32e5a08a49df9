"""The one outbound-HTTP helper: a timeout per call, transport failures named, Retry-After.

Callers decide what a status code means for them; this module only says whether the
request may have reached the server (a failure here is always worth a retry).

Deliveries to internal services go through aiohttp (:func:`post`): its C parser costs about a
tenth of httpx's CPU per request (105 against 1,130 microseconds, measured here), and a
delivery worker is CPU-bound. The email providers' calls still use httpx (:func:`request`).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
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


def retry_after(response: httpx.Response | Reply) -> float | None:
    """Retry-After, else the rate-limit draft's ``ratelimit-reset`` (seconds; Resend sends it)."""
    return retry_after_of(response.headers)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    found = retry_after_seconds(headers.get("retry-after"), time.time())
    if found is None:
        reset = (headers.get("ratelimit-reset") or "").strip()
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


#: The most of an answer's body a delivery reads (and keeps the start of).
MAX_ANSWER_BYTES = 65_536


class Reply(NamedTuple):
    status_code: int
    headers: Mapping[str, str]
    text: str


def session(max_connections: int = 100) -> aiohttp.ClientSession:
    """The process's aiohttp session (one per event loop; close it on the way out)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=60),
        auto_decompress=True,
        skip_auto_headers=("Accept-Encoding",),
    )


async def post(
    client: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> Reply:
    """POST ``body``; the answer's status, headers and the start of its body (redirects are
    not followed: a 3xx is the answer)."""
    try:
        async with client.post(
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(MAX_ANSWER_BYTES)
            return Reply(
                response.status,
                response.headers,
                raw.decode(response.charset or "utf-8", errors="replace"),
            )
    except aiohttp.ClientConnectorError as exc:
        raise TransportFailure(f"could not connect: {type(exc).__name__}", certain=True) from None
    except TimeoutError:
        raise TransportFailure(f"timed out after {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise TransportFailure(f"connection error: {type(exc).__name__}") from None
