"""Stripe events routed to inkpass, the billing service: routing rules and the contract.

The contract (``InkpassEvent``) is what inkpass receives, as JSON, at
``POST {INKPASS_INTERNAL_URL}/internal/billing/<kind>`` with headers
``X-API-Key: MIMIC_SERVICE_API_KEY`` and ``Idempotency-Key: <delivery id>``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mimic.core.deps import Deps
from mimic.events.routing import Rule
from mimic.events.schemas import DeliveryContext, Route, TargetRequest

TARGET = "inkpass"

# The seed's task names: queued jobs carry them, so they never change.
SUBSCRIPTION_CREATED = "mimic.tasks.route_to_inkpass_subscription_created"
SUBSCRIPTION_UPDATED = "mimic.tasks.route_to_inkpass_subscription_updated"
SUBSCRIPTION_DELETED = "mimic.tasks.route_to_inkpass_subscription_deleted"
INVOICE_EVENT = "mimic.tasks.route_to_inkpass_invoice_event"

#: task name -> inkpass path suffix (``POST /internal/billing/<path>``).
PATHS = {
    SUBSCRIPTION_CREATED: "subscription-created",
    SUBSCRIPTION_UPDATED: "subscription-updated",
    SUBSCRIPTION_DELETED: "subscription-deleted",
    INVOICE_EVENT: "invoice-event",
}

#: Stripe event type -> the task that routes it to inkpass.
STRIPE_ROUTES: dict[str, str] = {
    "checkout.session.completed": SUBSCRIPTION_CREATED,
    "customer.subscription.created": SUBSCRIPTION_CREATED,
    "customer.subscription.updated": SUBSCRIPTION_UPDATED,
    "customer.subscription.deleted": SUBSCRIPTION_DELETED,
    "invoice.payment_failed": INVOICE_EVENT,
    "invoice.payment_succeeded": INVOICE_EVENT,
    "invoice.paid": INVOICE_EVENT,
}

RULES = [
    Rule("stripe", event_type, Route(target_service=TARGET, task_name=task))
    for event_type, task in STRIPE_ROUTES.items()
]


class InkpassEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The JSON body inkpass receives. Absent values are omitted, never null."""

    delivery_id: str
    event_id: str  # Stripe's evt_... id
    event_type: str
    mimic_event_id: str
    livemode: bool = False
    created: int | None = None
    object_id: str | None = None  # cs_..., sub_... or in_...
    customer_id: str | None = None
    customer_email: str | None = None
    subscription_id: str | None = None
    product_type: str | None = None
    status: str | None = None
    amount_due: int | None = None
    amount_paid: int | None = None
    amount_total: int | None = None
    currency: str | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])  # expanded object
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def inkpass_event(context: DeliveryContext) -> InkpassEvent:
    data = context.payload.get("data")
    found = data.get("object") if isinstance(data, dict) else None
    obj: dict[str, Any] = found if isinstance(found, dict) else {}
    raw_metadata = obj.get("metadata")
    metadata = (
        {str(k): str(v) for k, v in raw_metadata.items()} if isinstance(raw_metadata, dict) else {}
    )
    details = obj.get("customer_details")
    email = _str(obj.get("customer_email")) or (
        _str(details.get("email")) if isinstance(details, dict) else None
    )
    is_subscription = obj.get("object") == "subscription"
    cancel = obj.get("cancel_at_period_end")
    return InkpassEvent(
        delivery_id=str(context.delivery_id),
        event_id=context.event_id,
        event_type=context.event_type,
        mimic_event_id=str(context.event_uuid),
        livemode=bool(context.payload.get("livemode", False)),
        created=_int(context.payload.get("created")),
        object_id=_str(obj.get("id")),
        customer_id=_str(obj.get("customer")),
        customer_email=email,
        subscription_id=_str(obj.get("id")) if is_subscription else _str(obj.get("subscription")),
        product_type=metadata.get("product_type"),
        status=_str(obj.get("status")),
        amount_due=_int(obj.get("amount_due")),
        amount_paid=_int(obj.get("amount_paid")),
        amount_total=_int(obj.get("amount_total")),
        currency=_str(obj.get("currency")),
        current_period_end=_int(obj.get("current_period_end")),
        cancel_at_period_end=cancel if isinstance(cancel, bool) else None,
        metadata=metadata,
    )


def inkpass_request(context: DeliveryContext, deps: Deps) -> TargetRequest:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(context.delivery_id),
        "User-Agent": "mimic",
    }
    settings = deps.settings.inkpass
    if settings.service_api_key is not None:
        headers["X-API-Key"] = settings.service_api_key.get()
    return TargetRequest(
        url=f"{settings.url}/internal/billing/{PATHS[context.task_name]}",
        body=msgspec.json.encode(inkpass_event(context)),
        headers=headers,
        timeout=settings.timeout_seconds,
    )
