"""Provider delivery events (Resend and Postmark webhooks) -> notification status and timeline.

Events arrive through the gateway (stored, deduplicated by ``events``) and are applied by
``mimic.tasks.handle_email_delivery_event``. A status only moves forward. Which event types
a provider sends, and how to read them, is in that provider's module (``providers.registry``).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import msgspec

from mimic.core.deps import Deps
from mimic.core.settings import EmailSettings
from mimic.email import repository, status, suppression
from mimic.email.providers.registry import REGISTRY
from mimic.email.suppression import SuppressionReason
from mimic.events.routes import Rule
from mimic.events.schemas import DeliveryContext, Outcome, Route

logger = logging.getLogger(__name__)

EVENT_TASK = "mimic.tasks.handle_email_delivery_event"
TARGET = "mimic"
#: Attempts to find the notification an event is about before ignoring the event.
UNKNOWN_EMAIL_ATTEMPTS = 3


def unknown_message_window(settings: EmailSettings) -> float:
    """How long an event for a message id Mimic does not know yet keeps being retried.

    A send whose outcome was unknown (a Postmark timeout, say) may have been delivered at
    once, yet its provider id is recorded only when the retry finds it, after
    POSTMARK_RECHECK_SECONDS and up to three provider calls. The window covers that, with
    half again as margin for a busy worker."""
    return 1.5 * (settings.postmark_recheck_seconds + 3 * settings.provider_timeout_seconds)


class EmailEvent(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str
    status: str
    moves: bool
    detail: str
    occurred_at: datetime.datetime | None
    #: Set when the event means "do not mail these addresses again" (None: all recipients).
    suppress: SuppressionReason | None = None
    addresses: list[str] | None = None


#: Every provider event type Mimic tracks goes to one task, which applies it.
RULES = [
    Rule(provider.name, event_type, Route(target_service=TARGET, task_name=EVENT_TASK))
    for provider in REGISTRY.values()
    if provider.tracking is not None
    for event_type in provider.tracking.events
]


def parse(provider: str, event_type: str, payload: dict[str, Any]) -> EmailEvent | None:
    tracking = REGISTRY[provider].tracking
    if tracking is None or event_type not in tracking.events:
        return None
    status, moves = tracking.events[event_type]
    facts = tracking.read(event_type, payload)
    if facts.message_id is None:
        return None
    detail = f"{event_type}: {facts.reason}" if facts.reason else event_type
    return EmailEvent(
        message_id=facts.message_id,
        status=status,
        moves=moves,
        detail=detail,
        occurred_at=facts.occurred_at,
        suppress=facts.suppress,
        addresses=facts.addresses or None,
    )


async def apply_email_event(context: DeliveryContext, deps: Deps) -> Outcome:
    event = parse(context.provider, context.event_type, context.payload)
    if event is None:
        return Outcome(kind="success", result={"ignored": context.event_type})
    found = await repository.by_provider_message(deps.db, context.provider, event.message_id)
    if found is None:
        missing = f"no notification has {context.provider} id {event.message_id}"
        window = unknown_message_window(deps.settings.email)
        if context.attempt >= UNKNOWN_EMAIL_ATTEMPTS and context.age_seconds >= window:
            # Not one of ours (a shared provider account), or never recorded: stop asking.
            return Outcome(kind="success", result={"ignored": missing})
        # The send may not have recorded the provider's id yet: retry until the window ends.
        return Outcome(kind="retry", error=missing)
    await status.apply_provider_event(
        deps.db,
        found.id,
        status=event.status,
        moves=event.moves,
        detail=event.detail,
        provider_event_id=context.event_id,
        occurred_at=event.occurred_at,
    )
    addresses = event.addresses or found.to
    if event.suppress is not None and len(addresses) > 1:
        # Resend names the message's recipients, not which of them bounced or complained:
        # suppressing all of them would stop mail to addresses that work.
        logger.info(
            "%s for notification %s with %d recipients: not suppressing (which one is unknown)",
            event.suppress,
            found.id,
            len(addresses),
        )
    elif event.suppress is not None:
        await suppression.add(
            deps.db,
            found.tenant_id,
            addresses,
            reason=event.suppress,
            provider=context.provider,
            notification_id=found.id,
            detail=event.detail,
        )
    return Outcome(
        kind="success", result={"notification_id": str(found.id), "status": event.status}
    )
