"""Resend over its HTTP API (the SDK keeps one module-global key, unsafe under BYOK)."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from mimic.core import http
from mimic.email.providers import (
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
    Sent,
    error_text,
    post,
)


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
            rate_limited=code == 429,
        )
    if code == 409 and name == "concurrent_idempotent_requests":
        raise RetryableSendError(reason, retry_after=http.retry_after(response))
    raise PermanentSendError(reason)
