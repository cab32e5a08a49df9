"""The gateway's vocabulary: statuses, an incoming event, a route, one delivery attempt."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

#: webhook_events.status (the SQL CHECK says the same; a test compares them).
EventStatus = Literal["received", "delivered", "failed", "ignored"]
#: webhook_deliveries.status
DeliveryStatus = Literal["pending", "dispatched", "success", "failed"]
#: bulk_retries.status
BulkRetryStatus = Literal["queued", "running", "done"]


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
    #: Seconds since this delivery was created (by the database's clock).
    age_seconds: float = 0.0


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


# --- the admin API's bodies -------------------------------------------------------------------


class EventSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    provider: str
    event_type: str
    event_id: str
    status: EventStatus
    received_at: datetime.datetime
    processed_at: datetime.datetime | None
    error_message: str | None
    retry_count: int


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventSummary]
    next_cursor: str | None


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    target_service: str
    task_name: str
    status: DeliveryStatus
    attempt_count: int
    last_error: str | None
    result: dict[str, Any] | None
    job_id: int | None
    #: procrastinate's status of the delivery's job (todo, doing, succeeded, failed, ...).
    job_status: str | None
    #: True for deliveries a replay replaced; they stay for audit.
    superseded: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime
    completed_at: datetime.datetime | None


class EventDetail(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    provider: str
    event_type: str
    event_id: str
    payload: dict[str, Any]
    #: The signature header as received (Stripe-Signature or svix-signature).
    signature: str | None
    status: EventStatus
    received_at: datetime.datetime
    processed_at: datetime.datetime | None
    error_message: str | None
    retry_count: int
    deliveries: list[DeliveryOut]


class DeliverySummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    event_uuid: uuid.UUID
    provider: str
    event_type: str
    event_id: str
    target_service: str
    task_name: str
    status: DeliveryStatus
    attempt_count: int
    last_error: str | None
    job_id: int | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[DeliverySummary]
    next_cursor: str | None


class Replayed(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    #: The routes today's routing table gave the event (none: it is stored as ignored).
    routes: list[Route]
    delivery_ids: list[uuid.UUID]


class Retried(msgspec.Struct, kw_only=True):
    delivery_id: uuid.UUID
    job_id: int


BULK_RETRY_LIMIT = 10_000


class BulkRetryIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which failed deliveries to retry. Only ``failed`` ones can be retried."""

    status: Literal["failed"] = "failed"
    target: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=BULK_RETRY_LIMIT)] = BULK_RETRY_LIMIT


class BulkRetryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: BulkRetryStatus
    #: Deliveries matched (known once the job has started) and retried so far.
    total: int
    retried: int
    job_id: int | None
    filters: dict[str, Any]
    created_at: datetime.datetime
    finished_at: datetime.datetime | None
