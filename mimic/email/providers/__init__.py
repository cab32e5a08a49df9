"""Email providers: Resend and Postmark over one shared httpx client, SMTP via aiosmtplib.

What every provider module shares: the message, the outcome and its failures, and the
``Provider`` record each module fills in (``registry.REGISTRY`` holds them by name).

Keys are passed per call (never module-global), so concurrent sends for different tenants
each use their own key. Failures are classified: ``RetryableSendError`` (429, 5xx, timeouts,
Resend's concurrent-idempotency 409) or ``PermanentSendError`` (bad key, bad address,
Postmark 406 inactive recipient, ...), carrying the provider's reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import httpx
import msgspec

from mimic.core import http
from mimic.core.settings import EmailProvider, EmailSettings, Secret, SmtpSecurity
from mimic.email.schemas import CredentialProvider
from mimic.email.suppression import SuppressionReason


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


class Credential(msgspec.Struct, kw_only=True, frozen=True):
    """A tenant's decrypted credential (``email.credentials``), alive only for one send."""

    provider: CredentialProvider
    from_email: str
    api_key: str | None = None
    smtp: SmtpConfig | None = None
    rate_per_second: float | None = None

    def __repr__(self) -> str:
        return f"Credential(provider={self.provider!r}, from_email={self.from_email!r})"


class Sent(msgspec.Struct, frozen=True):
    """The provider took the message: its id, and anything worth a line in the timeline."""

    message_id: str
    note: str | None = None


class SendError(Exception):
    """``unwell``: the failure says the provider (or the credential) itself is unwell — no
    connection, a refused login, a 5xx from an HTTP provider, SMTP 421 — and counts toward
    its circuit breaker. A refusal of this one message (its content, sender or recipients)
    or a 429 says nothing about the provider: one tenant's mail cannot close a provider
    credential that others share."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, unwell: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unwell = unwell


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
        unwell: bool = True,
    ) -> None:
        super().__init__(reason, retry_after=retry_after, unwell=unwell)
        self.certain = certain


class PermanentSendError(SendError):
    def __init__(
        self, reason: str, *, inactive_recipient: bool = False, unwell: bool = False
    ) -> None:
        super().__init__(reason, unwell=unwell)
        #: The provider refused the recipients as inactive (Postmark 406): suppress them.
        self.inactive_recipient = inactive_recipient


#: What a provider wrote in an error stands between these marks: its own words, perhaps about
#: the platform's account. Stored and shown to admin keys; a tenant key sees them replaced
#: (``hide_provider_text``).
_OPEN, _CLOSE = "\u00ab", "\u00bb"
_QUOTED = re.compile(f"{_OPEN}[^{_OPEN}{_CLOSE}]*{_CLOSE}")
HIDDEN = f"{_OPEN}the provider's message: admins only{_CLOSE}"


def error_text(response: httpx.Response) -> str:
    """The provider's message (at most 300 characters), marked as the provider's words."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = response.text
    if isinstance(body, dict):
        text = next(
            (str(body[k]) for k in ("message", "Message", "error") if isinstance(body.get(k), str)),
            text,
        )
    text = text[:300].replace(_OPEN, "").replace(_CLOSE, "")
    return f"{_OPEN}{text}{_CLOSE}"


def hide_provider_text(text: str | None) -> str | None:
    """``text`` as a tenant key sees it: every provider message replaced by a mark (the
    status code and Mimic's own words stay)."""
    return None if text is None else _QUOTED.sub(HIDDEN, text)


async def post(
    http_client: httpx.AsyncClient, url: str, timeout: float, **kwargs: Any
) -> httpx.Response:
    """POST to a provider's API; a transport failure is a retryable send error."""
    try:
        return await http.request(http_client, "POST", url, timeout=timeout, **kwargs)
    except http.TransportFailure as exc:
        raise RetryableSendError(exc.reason, certain=exc.certain) from None


def api_key(credential: Credential | None, platform: Secret | None, what: str) -> str:
    """The tenant's key when it has one, else the platform's."""
    if credential is not None and credential.api_key:
        return credential.api_key
    if platform is not None:
        return platform.get()
    raise PermanentSendError(f"no {what} for this tenant or the platform")


# --- delivery-tracking events -------------------------------------------------------------


class EventFacts(msgspec.Struct, kw_only=True, frozen=True):
    """What one delivery-tracking event says, read from its provider's payload."""

    message_id: str | None
    reason: str | None
    occurred_at: datetime.datetime | None
    #: Set when the event means "do not mail these addresses again".
    suppress: SuppressionReason | None = None
    #: The recipients the event names (None: it names none).
    addresses: list[str] | None = None


def text(value: Any) -> str | None:
    """A payload's value when it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def timestamp(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tracking:
    """A provider's delivery-tracking webhooks (received by ``webhooks``, applied by
    ``email.tracking``)."""

    #: event type -> (timeline status, whether it moves the notification's status)
    events: Mapping[str, tuple[str, bool]]
    #: Reads an event of one of those types.
    read: Callable[[str, dict[str, Any]], EventFacts]


# --- the provider record ------------------------------------------------------------------


class Send(Protocol):
    """Send one message with the tenant's credential when it has one, else the platform's.
    ``resumed``: an earlier attempt through this provider may have sent it."""

    async def __call__(
        self,
        http_client: httpx.AsyncClient,
        settings: EmailSettings,
        credential: Credential | None,
        message: OutgoingEmail,
        /,
        *,
        resumed: bool,
    ) -> Sent: ...


#: What a tenant brings for a provider (BYOK): an API key, or its own SMTP server.
CredentialKind = Literal["api_key", "smtp"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provider:
    """Everything Mimic knows about one provider, kept in that provider's module."""

    name: EmailProvider
    send: Send
    #: Whether the platform's settings let it send without a tenant's credential.
    configured: Callable[[EmailSettings], bool]
    #: The platform's sends per second through it (0: no limit); a credential may say.
    platform_rate: Callable[[EmailSettings], float]
    #: What a tenant brings for it; None: tenants cannot bring their own.
    credential: CredentialKind | None = None
    #: None: it sends no delivery-tracking webhooks.
    tracking: Tracking | None = None
