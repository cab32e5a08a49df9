"""The gateway's vocabulary: statuses, an incoming event, a route, one delivery attempt."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

#: webhook_events.status (the SQL CHECK says the same; a test compares them).
EventStatus = Literal["received", "delivered", "failed", "ignored"]
#: webhook_deliveries.status ("paused": its destination is paused or disabled; it waits)
DeliveryStatus = Literal["pending", "dispatched", "success", "failed", "paused"]
#: The providers whose webhooks Mimic receives (and routes).
WebhookProvider = Literal["stripe", "resend", "postmark"]
WEBHOOK_PROVIDERS: tuple[WebhookProvider, ...] = ("stripe", "resend", "postmark")
#: gateway_destinations.state
DestinationState = Literal["active", "paused", "disabled"]
#: What a route sends: inkpass's contract, the provider's event as received, or an envelope.
BodyKind = Literal["inkpass", "event", "envelope"]
#: Who defines a destination or route (only "api" ones can be changed through the API).
ManagedBy = Literal["api", "config", "settings", "default"]
#: A filter condition's operator.
FilterOp = Literal["eq", "ne", "in", "exists", "prefix"]
#: bulk_retries.status
BulkRetryStatus = Literal["queued", "running", "done"]


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where one event goes: a target service and the task that calls it; for a stored route,
    its id, and the path and body the delivery sends (None for Mimic's own handlers)."""

    target_service: str
    task_name: str
    route_id: uuid.UUID | None = None
    path: str | None = None
    body: BodyKind | None = None


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
    route_id: uuid.UUID | None = None
    path: str | None = None
    body: BodyKind | None = None
    #: The event as received (only read for deliveries whose body is "event").
    raw_body: bytes | None = None
    received_at: datetime.datetime | None = None
    #: gateway_version when the attempt was claimed: the destination cache is that fresh.
    gateway_version: int = 0


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
    #: The route that made this delivery (None: one of Mimic's own handlers).
    route_id: uuid.UUID | None
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


class MatchedRoute(msgspec.Struct, kw_only=True):
    route_id: uuid.UUID
    #: The route's name today (None: unnamed, or deleted since).
    name: str | None
    destination: str


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
    #: The routes that matched when the event was received (or last replayed).
    matched_routes: list[MatchedRoute]


class DeliverySummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    event_uuid: uuid.UUID
    provider: str
    event_type: str
    event_id: str
    target_service: str
    task_name: str
    route_id: uuid.UUID | None
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
    #: The routes that match the event today (none: it is stored as ignored).
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


# --- destinations and routes (the gateway's configuration) ----------------------------------

#: A destination's or route's name: lower-case letters, digits and dashes, 1-63 characters.
Slug = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", examples=["crm"])
]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
HeaderValue = Annotated[str, msgspec.Meta(max_length=1024, pattern=r"^[\x20-\x7e]*$")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
LongSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=100)]
Rate = Annotated[float, msgspec.Meta(gt=0, le=100_000)]
RoutePath = Annotated[str, msgspec.Meta(max_length=512, pattern=r"^(/[\x21-\x7e]*)?$")]


class ApiKeyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An API key the destination expects: sent as ``header: value`` with every delivery.
    The value is sealed at rest and never shown again (only its last 4 characters)."""

    value: Annotated[
        str,
        msgspec.Meta(
            min_length=8, max_length=1024, pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
        ),
    ]
    header: HeaderName = "X-API-Key"


class ApiKeyOut(msgspec.Struct, kw_only=True):
    header: str
    last4: str


class SigningSecretOut(msgspec.Struct, kw_only=True):
    id: str
    created_at: datetime.datetime
    #: When a rotated-out secret stops signing (None: the current secret).
    expires_at: datetime.datetime | None


class Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How deliveries to a destination are made and retried."""

    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    max_attempts: Attempts = 10
    backoff_base_seconds: Seconds = 2.0
    backoff_max_seconds: LongSeconds = 3600.0
    #: At most this many deliveries per second, across every worker (None: no limit).
    rate_per_second: Rate | None = None
    #: After this many failed attempts within circuit_window_seconds, deliveries wait
    #: circuit_cooldown_seconds without spending attempts (0: no circuit breaker).
    circuit_failures: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    circuit_window_seconds: Seconds = 60.0
    circuit_cooldown_seconds: Seconds = 30.0


class DestinationIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Slug
    #: The base URL (http or https); a route's path is appended to it.
    url: Annotated[str, msgspec.Meta(max_length=2048, examples=["http://127.0.0.1:9000"])]
    headers: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)
    api_key: ApiKeyIn | None = None
    #: Sign every delivery per Standard Webhooks with a new whsec_ secret (shown once).
    signing: bool = False
    policy: Policy = msgspec.field(default_factory=Policy)


class PolicyPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] | None = None
    max_attempts: Attempts | None = None
    backoff_base_seconds: Seconds | None = None
    backoff_max_seconds: LongSeconds | None = None
    rate_per_second: Rate | msgspec.UnsetType | None = msgspec.UNSET
    circuit_failures: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    circuit_window_seconds: Seconds | None = None
    circuit_cooldown_seconds: Seconds | None = None


class DestinationPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields given change. ``api_key: null`` removes the key; ``signing: false``
    removes every signing secret, ``signing: true`` adds one when there is none."""

    url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    headers: dict[HeaderName, HeaderValue] | None = None
    api_key: ApiKeyIn | msgspec.UnsetType | None = msgspec.UNSET
    signing: bool | None = None
    policy: PolicyPatch | None = None


class DestinationOut(msgspec.Struct, kw_only=True):
    name: str
    url: str
    headers: dict[str, str]
    api_key: ApiKeyOut | None
    signing_secrets: list[SigningSecretOut]
    policy: Policy
    state: DestinationState
    managed_by: ManagedBy
    #: Deliveries not finished yet (pending, in flight or paused).
    unfinished_deliveries: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    #: A new signing secret, shown this once (create, rotate, or signing turned on).
    signing_secret: str | None = None


class RotateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Rotate the signing secret: deliveries are signed with the new one and, for this many
    seconds, with the previous one too (consumers switch over in that window)."""

    previous_valid_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86_400)] = 86_400


class Condition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One test on the event's payload. ``path`` is dot-separated keys (a number indexes a
    list): ``data.object.metadata.product_type``. ``eq``/``ne``: equal or not to ``value``;
    ``in``: one of ``value`` (a list); ``exists``: present (``value`` true, the default) or
    absent (false); ``prefix``: a string starting with ``value``."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    op: FilterOp
    value: Any = None


class RouteIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    provider: WebhookProvider
    #: Exact types (``invoice.paid``), prefixes (``customer.subscription.*``) or ``*``.
    event_types: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
        msgspec.Meta(min_length=1, max_length=100),
    ]
    destination: Slug
    name: Slug | None = None
    #: Every condition must hold (none: every event of those types).
    filter: Annotated[list[Condition], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    #: Appended to the destination's URL.
    path: RoutePath = ""
    body: BodyKind = "envelope"
    enabled: bool = True


class RoutePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Slug | msgspec.UnsetType | None = msgspec.UNSET
    event_types: (
        Annotated[
            list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
            msgspec.Meta(min_length=1, max_length=100),
        ]
        | None
    ) = None
    destination: Slug | None = None
    filter: Annotated[list[Condition], msgspec.Meta(max_length=20)] | None = None
    path: RoutePath | None = None
    body: BodyKind | None = None
    enabled: bool | None = None


class RouteOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str | None
    provider: WebhookProvider
    event_types: list[str]
    filter: list[Condition]
    destination: str
    path: str
    body: BodyKind
    #: The procrastinate task its deliveries run under.
    task_name: str
    enabled: bool
    managed_by: ManagedBy
    created_at: datetime.datetime
    updated_at: datetime.datetime


class RouteTestIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A stored event (``event_id``), or a provider and a payload (the type is read from the
    payload as the webhook endpoint reads it, unless ``event_type`` is given)."""

    event_id: uuid.UUID | None = None
    provider: WebhookProvider | None = None
    payload: dict[str, Any] | None = None
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class PlannedRequest(msgspec.Struct, kw_only=True):
    method: str
    url: str
    #: Secrets (the API key, signatures) are masked.
    headers: dict[str, str]
    #: The JSON body (the event as received is shown parsed).
    body: Any


class RouteMatchOut(msgspec.Struct, kw_only=True):
    route: RouteOut
    #: What the destination would receive (None when the destination is disabled).
    request: PlannedRequest | None
    destination_state: DestinationState


class RouteTestOut(msgspec.Struct, kw_only=True):
    provider: WebhookProvider
    event_type: str
    matched: list[RouteMatchOut]
    #: Mimic's own handlers this event also goes to (email tracking).
    handlers: list[str]
    #: True when nothing matches: the event would be stored as ignored.
    ignored: bool
