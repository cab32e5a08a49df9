from __future__ import annotations

import uuid
from typing import Any

import msgspec

from mimic.billing.inkpass import inkpass_event
from mimic.events.schemas import DeliveryContext


def context(event_type: str, obj: dict[str, Any]) -> DeliveryContext:
    return DeliveryContext(
        delivery_id=uuid.UUID(int=1),
        attempt=1,
        task_name="mimic.tasks.route_to_inkpass_invoice_event",
        target_service="inkpass",
        event_uuid=uuid.UUID(int=2),
        provider="stripe",
        event_id="evt_1",
        event_type=event_type,
        payload={"id": "evt_1", "created": 1700000000, "livemode": True, "data": {"object": obj}},
    )


def test_checkout_session_contract() -> None:
    event = inkpass_event(
        context(
            "checkout.session.completed",
            {
                "id": "cs_1",
                "object": "checkout.session",
                "customer": "cus_1",
                "customer_details": {"email": "a@example.com"},
                "subscription": "sub_1",
                "status": "complete",
                "amount_total": 1200,
                "currency": "usd",
                "metadata": {"product_type": "pro", "seats": 3},
            },
        )
    )
    assert msgspec.to_builtins(event) == {
        "delivery_id": str(uuid.UUID(int=1)),
        "event_id": "evt_1",
        "event_type": "checkout.session.completed",
        "mimic_event_id": str(uuid.UUID(int=2)),
        "livemode": True,
        "created": 1700000000,
        "object_id": "cs_1",
        "customer_id": "cus_1",
        "customer_email": "a@example.com",
        "subscription_id": "sub_1",
        "product_type": "pro",
        "status": "complete",
        "amount_total": 1200,
        "currency": "usd",
        "metadata": {"product_type": "pro", "seats": "3"},
    }


def test_subscription_contract_uses_its_own_id() -> None:
    event = inkpass_event(
        context(
            "customer.subscription.deleted",
            {
                "id": "sub_9",
                "object": "subscription",
                "customer": {"id": "cus_9", "object": "customer"},
                "status": "canceled",
                "cancel_at_period_end": False,
                "current_period_end": 1800000000,
            },
        )
    )
    assert event.subscription_id == "sub_9"
    assert event.customer_id == "cus_9"
    assert event.status == "canceled"
    assert event.cancel_at_period_end is False
    assert event.current_period_end == 1800000000


def test_invoice_contract() -> None:
    event = inkpass_event(
        context(
            "invoice.payment_failed",
            {
                "id": "in_1",
                "object": "invoice",
                "customer": "cus_1",
                "customer_email": "b@example.com",
                "subscription": "sub_1",
                "amount_due": 500,
                "amount_paid": 0,
                "currency": "eur",
                "status": "open",
            },
        )
    )
    assert (event.object_id, event.subscription_id) == ("in_1", "sub_1")
    assert (event.amount_due, event.amount_paid, event.currency) == (500, 0, "eur")
    assert event.customer_email == "b@example.com"


def test_odd_payload_shapes_do_not_crash() -> None:
    ctx = context("invoice.paid", {})
    weird = msgspec.structs.replace(ctx, payload={"data": "nope"})
    event = inkpass_event(weird)
    assert event.customer_id is None
    assert "customer_id" not in msgspec.json.decode(msgspec.json.encode(event))
