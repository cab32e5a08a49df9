"""Postmark over its HTTP API, and its delivery-tracking webhooks. It has no idempotency
keys: a retried send first searches Postmark by Mimic's metadata for an earlier send of the
same notification."""

from __future__ import annotations

import logging
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
    error_text,
    post,
    text,
    timestamp,
)
from mimic.email.suppression import SuppressionReason

logger = logging.getLogger(__name__)

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
            unwell=response.status_code != 429,  # a 429: up, just busy
        )
    # ErrorCode 406: "You tried to send to recipient(s) that have been marked as inactive."
    # 401 (and ErrorCode 10, a bad server token): the token itself is refused.
    raise PermanentSendError(
        reason,
        inactive_recipient=body.get("ErrorCode") == 406,
        unwell=response.status_code in (401, 403) or body.get("ErrorCode") == 10,
    )


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


async def send(
    http_client: httpx.AsyncClient,
    settings: EmailSettings,
    credential: Credential | None,
    message: OutgoingEmail,
    /,
    *,
    resumed: bool,
) -> Sent:
    timeout = settings.provider_timeout_seconds
    token = api_key(credential, settings.postmark_server_token, "Postmark server token")
    if resumed:
        # An earlier attempt may have reached Postmark (it died mid-call or timed out):
        # Postmark may have sent it already, and has no idempotency key to ask.
        earlier = await find_postmark_message(
            http_client,
            base_url=settings.postmark_api_url,
            token=token,
            notification_id=message.notification_id,
            timeout=timeout,
        )
        if earlier is not None:
            logger.info("notification %s was already sent by Postmark", message.notification_id)
            return Sent(earlier, "found the earlier send at Postmark; not sent again")
    try:
        return await send_postmark(
            http_client,
            base_url=settings.postmark_api_url,
            token=token,
            message=message,
            timeout=timeout,
        )
    except RetryableSendError as exc:
        if exc.certain:
            raise
        # It may have been sent: give Postmark's search time to see it before the retry.
        raise RetryableSendError(
            exc.reason,
            retry_after=max(exc.retry_after or 0.0, settings.postmark_recheck_seconds),
        ) from None


#: event type -> (timeline status, whether it moves the notification's status)
POSTMARK_EVENTS: dict[str, tuple[str, bool]] = {
    "Delivery": ("delivered", True),
    "Bounce": ("bounced", True),
    "SpamComplaint": ("complained", True),
    "Open": ("opened", False),
    "Click": ("clicked", False),
}

#: Bounce types that mean "this address will never accept mail" (the rest are soft).
POSTMARK_HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})


def read_event(event_type: str, payload: dict[str, Any]) -> EventFacts:
    suppress: SuppressionReason | None = None
    if event_type == "Bounce" and payload.get("Type") in POSTMARK_HARD_BOUNCES:
        suppress = "hard_bounce"
    elif event_type == "SpamComplaint":
        suppress = "complaint"
    recipient = text(payload.get("Email") or payload.get("Recipient"))
    return EventFacts(
        message_id=text(payload.get("MessageID")),
        reason=text(payload.get("Description") or payload.get("Details")),
        occurred_at=timestamp(
            payload.get("DeliveredAt") or payload.get("BouncedAt") or payload.get("ReceivedAt")
        ),
        suppress=suppress,
        addresses=[recipient] if recipient else None,
    )


PROVIDER = Provider(
    name="postmark",
    send=send,
    configured=lambda settings: settings.postmark_server_token is not None,
    platform_rate=lambda settings: settings.postmark_rate_per_second,
    credential="api_key",
    tracking=Tracking(events=POSTMARK_EVENTS, read=read_event),
)
