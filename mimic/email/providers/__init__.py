"""Email providers: Resend and Postmark over one shared httpx client, SMTP via aiosmtplib.

Keys are passed per call (never module-global), so concurrent sends for different tenants
each use their own key. Failures are classified: ``RetryableSendError`` (429, 5xx, timeouts,
Resend's concurrent-idempotency 409) or ``PermanentSendError`` (bad key, bad address,
Postmark 406 inactive recipient, ...), carrying the provider's reason.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from mimic.core import http
from mimic.core.settings import SmtpSecurity


class OutgoingEmail(msgspec.Struct, kw_only=True, frozen=True):
    notification_id: str
    sender: str
    to: list[str]
    cc: list[str] = msgspec.field(default_factory=list)
    bcc: list[str] = msgspec.field(default_factory=list)
    reply_to: str | None = None
    subject: str
    html: str
    text: str
    tags: dict[str, str] = msgspec.field(default_factory=dict)


class SmtpConfig(msgspec.Struct, kw_only=True, frozen=True):
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    security: SmtpSecurity = "starttls"

    def __repr__(self) -> str:  # never show the password
        return f"SmtpConfig(host={self.host!r}, port={self.port}, security={self.security!r})"


class Sent(msgspec.Struct, frozen=True):
    """The provider took the message: its id, and anything worth a line in the timeline."""

    message_id: str
    note: str | None = None


class SendError(Exception):
    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RetryableSendError(SendError):
    """``certain``: the provider certainly did not send it (no connection, or a 429/5xx
    without a message id), so another provider may be tried. Otherwise the outcome is
    unknown, and only the same provider may be asked again (its idempotency protects)."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        certain: bool = False,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.certain = certain
        #: A 429: the provider is up, just busy; it does not count toward its circuit.
        self.rate_limited = rate_limited


class PermanentSendError(SendError):
    def __init__(self, reason: str, *, inactive_recipient: bool = False) -> None:
        super().__init__(reason)
        #: The provider refused the recipients as inactive (Postmark 406): suppress them.
        self.inactive_recipient = inactive_recipient


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        for key in ("message", "Message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
    return response.text[:300]


async def post(
    http_client: httpx.AsyncClient, url: str, timeout: float, **kwargs: Any
) -> httpx.Response:
    """POST to a provider's API; a transport failure is a retryable send error."""
    try:
        return await http.request(http_client, "POST", url, timeout=timeout, **kwargs)
    except http.TransportFailure as exc:
        raise RetryableSendError(exc.reason, certain=exc.certain) from None
