"""The inkpass contract: what inkpass, the billing service, receives for a Stripe event.

The contract (``InkpassEvent``) is what inkpass receives, as JSON, at
``POST {INKPASS_INTERNAL_URL}/internal/billing/<kind>`` with headers
``X-API-Key: MIMIC_SERVICE_API_KEY`` and ``Idempotency-Key: <delivery id>``. Which events go
there is data: the seed's four routes (``gateway_routes``, body ``inkpass``) send them, under
the seed's task names; any route may choose this body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mimic.events import delivery, routes
from mimic.events.schemas import DeliveryContext

TARGET = "inkpass"

# The seed's task names: queued jobs carry them, so they never change.
SUBSCRIPTION_CREATED = "mimic.tasks.route_to_inkpass_subscription_created"
SUBSCRIPTION_UPDATED = "mimic.tasks.route_to_inkpass_subscription_updated"
SUBSCRIPTION_DELETED = "mimic.tasks.route_to_inkpass_subscription_deleted"
INVOICE_EVENT = "mimic.tasks.route_to_inkpass_invoice_event"

#: The seed's routes' paths on inkpass -> their task names.
PATHS = {
    "/internal/billing/subscription-created": SUBSCRIPTION_CREATED,
    "/internal/billing/subscription-updated": SUBSCRIPTION_UPDATED,
    "/internal/billing/subscription-deleted": SUBSCRIPTION_DELETED,
    "/internal/billing/invoice-event": INVOICE_EVENT,
}


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


def inkpass_body(context: DeliveryContext) -> bytes:
    return msgspec.json.encode(inkpass_event(context))


def register() -> None:
    """Make the inkpass body and the seed's task names known to the gateway (the wiring calls
    this once per process, in the API and in the worker)."""
    delivery.BODIES["inkpass"] = inkpass_body
    routes.SEED_TASKS.update(PATHS)
