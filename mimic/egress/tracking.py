"""Provider delivery events (Resend and Postmark webhooks) -> notification status and timeline.

Events arrive through the ingress pipeline (stored, deduplicated) and are applied by
``mimic.tasks.handle_email_delivery_event``. A status only moves forward.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from mimic.deps import Deps
from mimic.egress.store import queries
from mimic.ingress.delivery import DeliveryContext, Outcome
from mimic.ingress.store import Route

EVENT_TASK = "mimic.tasks.handle_email_delivery_event"
#: Attempts to find the notification an event is about before ignoring the event.
UNKNOWN_EMAIL_ATTEMPTS = 3

#: event type -> (timeline status, whether it moves the notification's status)
RESEND_EVENTS: dict[str, tuple[str, bool]] = {
    "email.sent": ("sent", True),
    "email.delivered": ("delivered", True),
    "email.delivery_delayed": ("delivery_delayed", False),
    "email.bounced": ("bounced", True),
    "email.complained": ("complained", True),
    "email.failed": ("failed", True),
    "email.opened": ("opened", False),
    "email.clicked": ("clicked", False),
}
POSTMARK_EVENTS: dict[str, tuple[str, bool]] = {
    "Delivery": ("delivered", True),
    "Bounce": ("bounced", True),
    "SpamComplaint": ("complained", True),
    "Open": ("opened", False),
    "Click": ("clicked", False),
}
_EVENTS = {"resend": RESEND_EVENTS, "postmark": POSTMARK_EVENTS}
_RANK = {
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "bounced": 4,
    "complained": 4,
    "failed": 4,
}
_FAILURES = ("bounced", "complained", "failed")


class EmailEvent(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str
    status: str
    moves: bool
    detail: str
    occurred_at: datetime.datetime | None


def email_routes(provider: str, event_type: str) -> list[Route]:
    if event_type in _EVENTS[provider]:
        return [Route(target_service="mimic", task_name=EVENT_TASK)]
    return []


def postmark_event_id(payload: dict[str, Any]) -> str:
    """Postmark sends no event id: this one is stable across its retries of one event."""
    record = str(payload.get("RecordType", ""))
    when = (
        payload.get("ID")
        or payload.get("DeliveredAt")
        or payload.get("BouncedAt")
        or payload.get("ReceivedAt")
        or payload.get("ChangedAt")
        or ""
    )
    return f"{record}:{payload.get('MessageID', '')}:{payload.get('Recipient', '')}:{when}"


def _timestamp(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse(provider: str, event_type: str, payload: dict[str, Any]) -> EmailEvent | None:
    mapped = _EVENTS[provider].get(event_type)
    if mapped is None:
        return None
    status, moves = mapped
    if provider == "resend":
        data = _dict(payload.get("data"))
        message_id = data.get("email_id")
        bounce = _dict(data.get("bounce"))
        reason = bounce.get("message")
        occurred = _timestamp(payload.get("created_at"))
    else:
        message_id = payload.get("MessageID")
        reason = payload.get("Description") or payload.get("Details")
        occurred = _timestamp(
            payload.get("DeliveredAt") or payload.get("BouncedAt") or payload.get("ReceivedAt")
        )
    if not isinstance(message_id, str) or not message_id:
        return None
    detail = f"{event_type}: {reason}" if isinstance(reason, str) and reason else event_type
    return EmailEvent(
        message_id=message_id, status=status, moves=moves, detail=detail, occurred_at=occurred
    )


async def apply_email_event(context: DeliveryContext, deps: Deps) -> Outcome:
    event = parse(context.provider, context.event_type, context.payload)
    if event is None:
        return Outcome(kind="success", result={"ignored": context.event_type})
    row = await deps.db.fetchrow(
        queries["find_by_provider_message"], context.provider, event.message_id
    )
    if row is None:
        missing = f"no notification has {context.provider} id {event.message_id}"
        if context.attempt >= UNKNOWN_EMAIL_ATTEMPTS:
            # Not one of ours (a shared provider account), or never recorded: stop asking.
            return Outcome(kind="success", result={"ignored": missing})
        # The send may not have recorded the provider's id yet: retry a little.
        return Outcome(kind="retry", error=missing)
    async with deps.db.transaction() as conn:
        current = await conn.fetchval(queries["lock_notification"], row["id"])
        added = await conn.fetchval(
            queries["add_timeline"],
            row["id"],
            event.status,
            event.detail,
            context.event_id,
            event.occurred_at,
        )
        if added is not None and event.moves and _RANK[event.status] > _RANK.get(current, 0):
            error = event.detail if event.status in _FAILURES else None
            await conn.execute(queries["advance_status"], row["id"], event.status, error)
    return Outcome(
        kind="success", result={"notification_id": str(row["id"]), "status": event.status}
    )
