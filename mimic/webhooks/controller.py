"""Webhook endpoints: size limit -> verify -> parse -> group commit -> 200.

They are Litestar ASGI routes, not HTTP route handlers: a webhook skips Litestar's parameter
parsing, dependency injection and response pipeline, which cost about a third of the API's
CPU per webhook (measured with `make bench`: 4,500 -> 6,600 webhooks/s at 16 connections).
Errors still go through the app's one exception handler, so every refusal is the usual
error body, and the request-id middleware wraps them like any route. Litestar documents only
HTTP route handlers, so their OpenAPI operations are written beside them (``webhooks.openapi``),
from the same table (:data:`ENDPOINTS`) that makes the routes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import msgspec
from litestar import asgi
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send

from mimic.core import metrics
from mimic.core.deps import Deps
from mimic.core.errors import (
    BadRequest,
    NotConfigured,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from mimic.core.settings import Secret, WebhookSettings
from mimic.events.ingest import ingest
from mimic.events.routes import Router
from mimic.events.schemas import IncomingEvent, WebhookAccepted
from mimic.webhooks.verify import MAX_EVENT_ID, verify_basic_auth, verify_stripe, verify_svix

logger = logging.getLogger(__name__)

BASE_PATH = "/api/v1/gateway/webhooks"


#: An id or type: a key, not a document (longer ones are refused, not stored).
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID)]


class StripeEventIn(msgspec.Struct, kw_only=True):
    """The fields Mimic needs from a Stripe event; everything else is kept in the payload."""

    id: Key
    type: Key


class StripeTestEventIn(msgspec.Struct, kw_only=True):
    """The seed's unsigned example: ``id`` is optional."""

    type: Key
    id: Key | None = None


class ResendEventIn(msgspec.Struct, kw_only=True):
    type: Key


class PostmarkEventIn(msgspec.Struct, kw_only=True):
    RecordType: Key
    MessageID: Key


STRIPE_EXAMPLE: dict[str, Any] = {
    "id": "evt_1PqDemo0000000000000000",
    "object": "event",
    "type": "customer.subscription.created",
    "created": 1764000000,
    "data": {"object": {"id": "sub_123", "object": "subscription", "customer": "cus_123"}},
}
STRIPE_TEST_EXAMPLE: dict[str, Any] = {
    "type": "customer.subscription.created",
    "data": {"object": {"id": "sub_123", "customer": "cus_123", "status": "active"}},
}
RESEND_EXAMPLE: dict[str, Any] = {
    "type": "email.delivered",
    "created_at": "2026-11-26T10:00:00.000Z",
    "data": {"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "to": ["ann@example.com"]},
}
POSTMARK_EXAMPLE: dict[str, Any] = {
    "RecordType": "Delivery",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Recipient": "ann@example.com",
    "DeliveredAt": "2026-11-26T10:00:00Z",
}


@contextlib.contextmanager
def counted_rejections(provider: str) -> Iterator[None]:
    """Log and count every 4xx rejection; nothing has been stored when one is raised."""
    try:
        yield
    except (BadRequest, Unauthorized, PayloadTooLarge, ServiceUnavailable) as exc:
        # 4xx: the request is refused; 503 (secret unset, database away): nothing stored,
        # the provider retries. Both are logged and counted.
        metrics.webhooks_rejected.labels(provider, exc.code).inc()
        logger.warning("rejected %s webhook: %s (%s)", provider, exc.code, exc.message)
        raise


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be over ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequest("the client disconnected before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


#: Deeper JSON is refused: no provider nests an event that far (Stripe's go about 8 deep),
#: and whether a decoder gives up on its own depends on the Python version.
MAX_JSON_DEPTH = 64


def _deeper_than(body: bytes, limit: int) -> bool:
    try:
        stack = [(msgspec.json.decode(body), 1)]
    except RecursionError:
        return True
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_event(body: bytes, schema: type[Any]) -> Any:
    too_deep = BadRequest(f"JSON is nested more than {MAX_JSON_DEPTH} deep", code="invalid_json")
    try:
        event = msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"not a valid event: {exc}", code="invalid_event") from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise too_deep from None
    # Counting brackets is cheap; only a body with many can be deep enough to walk.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(body, MAX_JSON_DEPTH):
        raise too_deep
    return event


def require_secret(secret: Secret | None, name: str) -> str:
    if secret is None:
        raise NotConfigured(f"{name} is not configured")
    return secret.get()


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


Body = Callable[[], Awaitable[bytes]]


async def stripe_event(settings: WebhookSettings, headers: Headers, body: Body) -> IncomingEvent:
    raw = await body()
    header = headers.get("stripe-signature")
    verify_stripe(
        secret=require_secret(settings.stripe_secret, "STRIPE_WEBHOOK_SECRET"),
        header=header,
        body=raw,
        now=time.time(),
        tolerance=settings.stripe_tolerance_seconds,
    )
    event = decode_event(raw, StripeEventIn)
    return IncomingEvent(
        provider="stripe",
        event_id=event.id,
        event_type=event.type,
        raw_body=raw,
        payload_json=raw.decode(),
        signature=header,
    )


async def resend_event(settings: WebhookSettings, headers: Headers, body: Body) -> IncomingEvent:
    raw = await body()
    msg_id = verify_svix(
        secret=require_secret(settings.resend_secret, "RESEND_WEBHOOK_SECRET"),
        headers=headers,
        body=raw,
        now=time.time(),
    )
    event = decode_event(raw, ResendEventIn)
    return IncomingEvent(
        provider="resend",
        event_id=msg_id,
        event_type=event.type,
        raw_body=raw,
        payload_json=raw.decode(),
        signature=headers.get("svix-signature"),
    )


async def postmark_event(settings: WebhookSettings, headers: Headers, body: Body) -> IncomingEvent:
    # Credentials first: an unauthenticated caller's body is not even read.
    verify_basic_auth(
        secret=require_secret(settings.postmark_secret, "POSTMARK_WEBHOOK_SECRET"),
        header=headers.get("authorization"),
    )
    raw = await body()
    event = decode_event(raw, PostmarkEventIn)
    payload = msgspec.json.decode(raw)
    return IncomingEvent(
        provider="postmark",
        event_id=postmark_event_id(payload),
        event_type=event.RecordType,
        raw_body=raw,
        payload_json=raw.decode(),
        signature=None,
    )


async def stripe_test_event(
    settings: WebhookSettings, headers: Headers, body: Body
) -> IncomingEvent:
    """Dev only: an unsigned Stripe event; ``id`` defaults to evt_test_<random>."""
    raw = await body()
    event = decode_event(raw, StripeTestEventIn)
    payload = msgspec.json.decode(raw)
    if not isinstance(payload, dict):
        raise BadRequest("event must be a JSON object", code="invalid_event")
    event_id = event.id or f"evt_test_{uuid.uuid4().hex[:24]}"
    payload["id"] = event_id
    return IncomingEvent(
        provider="stripe",
        event_id=event_id,
        event_type=event.type,
        raw_body=raw,
        payload_json=msgspec.json.encode(payload).decode(),
        signature=None,
    )


async def accept(deps: Deps, router: Router, event: IncomingEvent) -> WebhookAccepted:
    started = time.perf_counter()
    with counted_rejections(event.provider):
        accepted = await ingest(deps.db, router, event)
    metrics.webhooks_received.labels(event.provider, str(accepted.duplicate).lower()).inc()
    metrics.webhook_latency.labels(event.provider).observe(time.perf_counter() - started)
    return accepted


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One webhook route and its documentation."""

    path: str
    #: Kept from the Litestar handlers these routes were (generated clients use them).
    operation_id: str
    provider: str
    parse: Callable[[WebhookSettings, Headers, Body], Awaitable[IncomingEvent]]
    summary: str
    description: str
    body_description: str
    example: dict[str, Any]
    dev_only: bool = False
    #: Refusals beyond 400, 413 and 503, by status: their descriptions.
    more_errors: dict[int, str] = dataclasses.field(default_factory=dict)


ENDPOINTS = [
    Endpoint(
        path="/stripe",
        operation_id="ApiV1GatewayWebhooksStripeStripeWebhook",
        provider="stripe",
        parse=stripe_event,
        summary="Receive a signed Stripe webhook",
        description=(
            "Verifies `Stripe-Signature` (any matching v1, ±STRIPE_TOLERANCE_SECONDS), stores "
            "the event and its raw body, and enqueues one job per route in the same "
            "transaction. 200 means committed; a duplicate event id answers "
            '`{"duplicate": true}` and creates nothing.'
        ),
        body_description="A Stripe event, exactly as Stripe signed it",
        example=STRIPE_EXAMPLE,
    ),
    Endpoint(
        path="/resend",
        operation_id="ApiV1GatewayWebhooksResendResendWebhook",
        provider="resend",
        parse=resend_event,
        summary="Receive a signed Resend (Svix) webhook",
        description=(
            "Verifies the `svix-*` headers (±5 minutes), stores the event keyed by `svix-id` "
            "and queues `mimic.tasks.handle_email_delivery_event` for `email.*` events, which "
            "moves the matching notification's status and timeline. Same answers as Stripe's."
        ),
        body_description="A Resend event, exactly as Svix signed it",
        example=RESEND_EXAMPLE,
    ),
    Endpoint(
        path="/postmark",
        operation_id="ApiV1GatewayWebhooksPostmarkPostmarkWebhook",
        provider="postmark",
        parse=postmark_event,
        summary="Receive a Postmark webhook (HTTP Basic credentials in the webhook URL)",
        description=(
            "Postmark does not sign webhooks: configure the URL as "
            "`https://postmark:<POSTMARK_WEBHOOK_SECRET>@<host>/api/v1/gateway/webhooks/postmark`. "
            "Delivery, Bounce, SpamComplaint, Open and Click events update the matching "
            "notification. Wrong or missing credentials: 401, nothing stored."
        ),
        body_description="A Postmark webhook record",
        example=POSTMARK_EXAMPLE,
        more_errors={401: "Missing or wrong credentials"},
    ),
    Endpoint(
        path="/stripe/test",
        operation_id="ApiV1GatewayWebhooksStripeTestStripeTestWebhook",
        provider="stripe",
        parse=stripe_test_event,
        summary="Dev only: an unsigned Stripe event through the same pipeline",
        description="Exists only when MIMIC_ENV=dev (404 elsewhere). `id` defaults to evt_test_….",
        body_description="A Stripe event without a signature; `type` is required, `id` optional",
        example=STRIPE_TEST_EXAMPLE,
        dev_only=True,
    ),
]


def endpoints(dev: bool) -> list[Endpoint]:
    """The dev-only endpoint exists (routed and documented) only when MIMIC_ENV=dev."""
    return [e for e in ENDPOINTS if dev or not e.dev_only]


def _route(endpoint: Endpoint, routing: Router) -> ASGIRouteHandler:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            raise MethodNotAllowedException(headers={"Allow": "POST"})
        deps: Deps = scope["litestar_app"].state.deps
        settings = deps.settings.webhooks
        headers = Headers.from_scope(scope)

        def body() -> Awaitable[bytes]:
            return read_body(receive, headers, settings.max_body_bytes)

        with counted_rejections(endpoint.provider):
            event = await endpoint.parse(settings, headers, body)
        answer = msgspec.json.encode(await accept(deps, routing, event))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    return asgi(BASE_PATH + endpoint.path, copy_scope=False, name=f"webhook{endpoint.path}")(handle)


def webhook_routes(routing: Router, *, dev: bool) -> list[ASGIRouteHandler]:
    return [_route(endpoint, routing) for endpoint in endpoints(dev)]
