"""Resend over its HTTP API (the SDK keeps one module-global key, unsafe under BYOK), and
its delivery-tracking webhooks."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from mimic.core import http
from mimic.core.settings import EmailSettings
from mimic.email.providers import (
    Credential,
    EventFacts,
    OutgoingEmail,
    PermanentSendError,
    Provider,
    RetryableSendError,
    Sent,
    Tracking,
    api_key,
    as_dict,
    error_text,
    post,
    text,
    timestamp,
)
from mimic.email.suppression import SuppressionReason


async def send_resend(
    http_client: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    message: OutgoingEmail,
    timeout: float,
) -> Sent:
    payload: dict[str, Any] = {
        "from": message.sender,
        "to": message.to,
        "subject": message.subject,
        "html": message.html,
        "text": message.text,
        "headers": {"X-Mimic-Notification-Id": message.notification_id},
    }
    if message.cc:
        payload["cc"] = message.cc
    if message.bcc:
        payload["bcc"] = message.bcc
    if message.reply_to:
        payload["reply_to"] = message.reply_to
    if message.tags:
        payload["tags"] = [{"name": k, "value": v} for k, v in message.tags.items()]
    response = await post(
        http_client,
        f"{base_url}/emails",
        timeout,
        json=payload,
        headers={
            "Authorization": f"Bearer {api_key}",
            # Resend keeps keys for 24 h: a retried send returns the first send's id.
            "Idempotency-Key": message.notification_id,
        },
    )
    if response.is_success:
        try:
            email_id = response.json().get("id")
        except (ValueError, AttributeError):
            email_id = None
        if not isinstance(email_id, str):
            # Retrying with the same Idempotency-Key returns the first send's id.
            raise RetryableSendError("Resend answered 2xx without an email id")
        return Sent(email_id)
    reason = f"Resend {response.status_code}: {error_text(response)}"
    name = ""
    with contextlib.suppress(ValueError, AttributeError):
        name = str(response.json().get("name", ""))
    code = response.status_code
    if code == 429 or code >= 500:
        # 429 and 503 say "not taken"; a 500, 502 or 504 may come after Resend took it.
        raise RetryableSendError(
            reason,
            retry_after=http.retry_after(response),
            certain=code in (429, 503),
            unwell=code != 429,  # a 429: up, just busy
        )
    if code == 409 and name == "concurrent_idempotent_requests":
        raise RetryableSendError(reason, retry_after=http.retry_after(response), unwell=False)
    # 401/403: the key itself is refused, for every message sent with it.
    raise PermanentSendError(reason, unwell=code in (401, 403))


async def send(
    http_client: httpx.AsyncClient,
    settings: EmailSettings,
    credential: Credential | None,
    message: OutgoingEmail,
    /,
    *,
    resumed: bool,
) -> Sent:
    # A resumed send needs nothing special: the Idempotency-Key returns the first send's id.
    return await send_resend(
        http_client,
        base_url=settings.resend_api_url,
        api_key=api_key(credential, settings.resend_api_key, "Resend API key"),
        message=message,
        timeout=settings.provider_timeout_seconds,
    )


#: event type -> (timeline status, whether it moves the notification's status)
RESEND_EVENTS: dict[str, tuple[str, bool]] = {
    "email.sent": ("sent", True),
    "email.delivered": ("delivered", True),
    "email.delivery_delayed": ("delivery_delayed", False),
    "email.bounced": ("bounced", True),
    "email.complained": ("complained", True),
    "email.failed": ("failed", True),
    # Resend did not send it: the address is on Resend's own suppression list.
    "email.suppressed": ("bounced", True),
    "email.opened": ("opened", False),
    "email.clicked": ("clicked", False),
}


def read_event(event_type: str, payload: dict[str, Any]) -> EventFacts:
    data = as_dict(payload.get("data"))
    bounce = as_dict(data.get("bounce"))
    suppress: SuppressionReason | None = None
    if event_type == "email.bounced" and bounce.get("type") == "Permanent":
        suppress = "hard_bounce"
    elif event_type == "email.complained":
        suppress = "complaint"
    elif event_type == "email.suppressed":
        suppress = "provider_suppressed"
    to = data.get("to")
    return EventFacts(
        message_id=text(data.get("email_id")),
        reason=text(bounce.get("message")),
        occurred_at=timestamp(payload.get("created_at")),
        suppress=suppress,
        # Every recipient of the message, not which of them the event is about.
        addresses=[a for a in to if isinstance(a, str)] if isinstance(to, list) else None,
    )


PROVIDER = Provider(
    name="resend",
    send=send,
    configured=lambda settings: settings.resend_api_key is not None,
    platform_rate=lambda settings: settings.resend_rate_per_second,
    credential="api_key",
    tracking=Tracking(events=RESEND_EVENTS, read=read_event),
)
