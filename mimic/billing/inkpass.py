"""Stripe events routed to inkpass, the billing service: routing table, contract and tasks.

The contract (``InkpassEvent``) is what inkpass receives, as JSON, at
``POST {INKPASS_INTERNAL_URL}/internal/billing/<kind>`` with headers
``X-API-Key: MIMIC_SERVICE_API_KEY`` and ``Idempotency-Key: <delivery id>``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import procrastinate

from mimic.deps import Deps
from mimic.ingress.delivery import DeliveryContext, TargetRequest, http_delivery, run_delivery
from mimic.ingress.store import Route
from mimic.jobs import QUEUE_WEBHOOKS, BackoffRetry, deps_of, survive_shutdown
from mimic.settings import Settings

TARGET = "inkpass"

#: task kind -> inkpass path suffix; the task is mimic.tasks.route_to_inkpass_<kind>.
KINDS = {
    "subscription_created": "subscription-created",
    "subscription_updated": "subscription-updated",
    "subscription_deleted": "subscription-deleted",
    "invoice_event": "invoice-event",
}

STRIPE_ROUTES: dict[str, str] = {
    "checkout.session.completed": "subscription_created",
    "customer.subscription.created": "subscription_created",
    "customer.subscription.updated": "subscription_updated",
    "customer.subscription.deleted": "subscription_deleted",
    "invoice.payment_failed": "invoice_event",
    "invoice.payment_succeeded": "invoice_event",
    "invoice.paid": "invoice_event",
}


def task_name(kind: str) -> str:
    return f"mimic.tasks.route_to_inkpass_{kind}"


def stripe_routes(event_type: str) -> list[Route]:
    kind = STRIPE_ROUTES.get(event_type)
    return [Route(target_service=TARGET, task_name=task_name(kind))] if kind else []


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


def _kind_of(task: str) -> str:
    return task.removeprefix("mimic.tasks.route_to_inkpass_")


def inkpass_request(context: DeliveryContext, deps: Deps) -> TargetRequest:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(context.delivery_id),
        "User-Agent": "mimic",
    }
    if deps.settings.service_api_key is not None:
        headers["X-API-Key"] = deps.settings.service_api_key.get()
    path = KINDS[_kind_of(context.task_name)]
    return TargetRequest(
        url=f"{deps.settings.inkpass_internal_url}/internal/billing/{path}",
        body=msgspec.json.encode(inkpass_event(context)),
        headers=headers,
    )


def register(app: procrastinate.App, settings: Settings) -> None:
    retry = BackoffRetry(
        base=settings.delivery_backoff_base_seconds, cap=settings.delivery_backoff_max_seconds
    )

    deliver = http_delivery(inkpass_request)

    @survive_shutdown
    async def route_to_inkpass(context: procrastinate.JobContext, delivery_id: str) -> None:
        await run_delivery(deps_of(context), delivery_id, deliver)

    for kind in KINDS:
        app.task(name=task_name(kind), queue=QUEUE_WEBHOOKS, pass_context=True, retry=retry)(
            route_to_inkpass
        )
