"""Postmark over its HTTP API. It has no idempotency keys: a retried send first searches
Postmark by Mimic's metadata for an earlier send of the same notification."""

from __future__ import annotations

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

POSTMARK_METADATA_KEY = "mimic_notification_id"


def _postmark_headers(token: str) -> dict[str, str]:
    return {"X-Postmark-Server-Token": token, "Accept": "application/json"}


async def send_postmark(
    http_client: httpx.AsyncClient,
    *,
    base_url: str,
    token: str,
    message: OutgoingEmail,
    timeout: float,
) -> Sent:
    payload: dict[str, Any] = {
        "From": message.sender,
        "To": ", ".join(message.to),
        "Subject": message.subject,
        "HtmlBody": message.html,
        "TextBody": message.text,
        "MessageStream": "outbound",
        # Lets a retried send find this one (Postmark has no idempotency keys).
        # Mimic's own key last: a caller's tag can never overwrite it (tags named mimic_*
        # are refused at the API anyway).
        "Metadata": {**message.tags, POSTMARK_METADATA_KEY: message.notification_id},
        "Headers": [{"Name": "X-Mimic-Notification-Id", "Value": message.notification_id}],
    }
    if message.cc:
        payload["Cc"] = ", ".join(message.cc)
    if message.bcc:
        payload["Bcc"] = ", ".join(message.bcc)
    if message.reply_to:
        payload["ReplyTo"] = message.reply_to
    if "tag" in message.tags:
        payload["Tag"] = message.tags["tag"]
    response = await post(
        http_client, f"{base_url}/email", timeout, json=payload, headers=_postmark_headers(token)
    )
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    if response.is_success and body.get("ErrorCode", 0) == 0:
        message_id = body.get("MessageID")
        if not isinstance(message_id, str):
            raise RetryableSendError("Postmark answered without a MessageID")
        return Sent(message_id)
    reason = f"Postmark {response.status_code}: {error_text(response)}"
    if "ErrorCode" in body:
        reason += f" (ErrorCode {body['ErrorCode']})"
    if response.status_code == 429 or response.status_code >= 500:
        # 429 and 503 say "not taken"; a 500, 502 or 504 may come after Postmark took it.
        raise RetryableSendError(
            reason,
            retry_after=http.retry_after(response),
            certain=response.status_code in (429, 503),
            rate_limited=response.status_code == 429,
        )
    # ErrorCode 406: "You tried to send to recipient(s) that have been marked as inactive."
    raise PermanentSendError(reason, inactive_recipient=body.get("ErrorCode") == 406)


async def find_postmark_message(
    http_client: httpx.AsyncClient,
    *,
    base_url: str,
    token: str,
    notification_id: str,
    timeout: float,
) -> str | None:
    """The MessageID of an earlier send of this notification, if Postmark has one."""
    try:
        response = await http.request(
            http_client,
            "GET",
            f"{base_url}/messages/outbound",
            params={
                "count": 1,
                "offset": 0,
                f"metadata_{POSTMARK_METADATA_KEY}": notification_id,
            },
            headers=_postmark_headers(token),
            timeout=timeout,
        )
    except http.TransportFailure:
        raise RetryableSendError("could not check Postmark for an earlier send") from None
    if not response.is_success:
        raise RetryableSendError(
            f"could not check Postmark for an earlier send ({response.status_code})"
        )
    messages = response.json().get("Messages") or []
    if messages and isinstance(messages[0].get("MessageID"), str):
        return str(messages[0]["MessageID"])
    return None
