"""The gateway's vocabulary: statuses, an incoming event, a route, one delivery attempt."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

#: webhook_events.status (the SQL CHECK says the same; a test compares them).
EventStatus = Literal["received", "delivered", "failed", "ignored"]
#: webhook_deliveries.status
DeliveryStatus = Literal["pending", "dispatched", "success", "failed"]


class Route(msgspec.Struct, frozen=True):
    """Where one event goes: a target service and the task that calls it."""

    target_service: str
    task_name: str


class IncomingEvent(msgspec.Struct, kw_only=True, frozen=True):
    provider: str
    event_id: str
    event_type: str
    raw_body: bytes
    #: The parsed payload as JSON text (Postgres stores it as jsonb).
    payload_json: str
    signature: str | None


class WebhookAccepted(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    duplicate: bool


class DeliveryContext(msgspec.Struct, kw_only=True, frozen=True):
    """What a delivery's perform function knows about the attempt and its event."""

    delivery_id: uuid.UUID
    attempt: int
    task_name: str
    target_service: str
    event_uuid: uuid.UUID
    provider: str
    event_id: str
    event_type: str
    payload: dict[str, Any]


class TargetRequest(msgspec.Struct, kw_only=True, frozen=True):
    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    kind: Literal["success", "retry", "permanent"]
    error: str | None = None
    result: dict[str, Any] | None = None
    retry_after: float | None = None
