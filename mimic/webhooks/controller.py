"""Webhook endpoints: size limit -> verify -> parse -> one transaction -> 200."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from mimic.core import metrics
from mimic.core.deps import Deps
from mimic.core.errors import (
    BadRequest,
    ErrorBody,
    NotConfigured,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from mimic.core.settings import Secret
from mimic.events.ingest import ingest
from mimic.events.routing import RoutingTable
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


def raw_json_body(description: str, example: dict[str, Any]) -> type[Operation]:
    """Documents the body of a handler that reads (and verifies) the raw bytes itself."""

    @dataclasses.dataclass
    class RawBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                required=True,
                description=description,
                content={
                    "application/json": OpenAPIMediaType(
                        schema=Schema(type=OpenAPIType.OBJECT), example=example
                    )
                },
            )

    return RawBody


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

ERRORS = {
    400: ResponseSpec(ErrorBody, description="Rejected: bad signature, header or JSON"),
    413: ResponseSpec(ErrorBody, description="Body over WEBHOOK_MAX_BODY_BYTES"),
    503: ResponseSpec(ErrorBody, description="Not stored; the provider should retry"),
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


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    try:
        return await request.body()
    except RequestEntityTooLarge:
        raise PayloadTooLarge() from None


def decode_event(body: bytes, schema: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"not a valid event: {exc}", code="invalid_event") from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code="invalid_json") from None


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


async def accept(deps: Deps, routing: RoutingTable, event: IncomingEvent) -> WebhookAccepted:
    started = time.perf_counter()
    routes = routing.routes_for(event.provider, event.event_type)
    with counted_rejections(event.provider):
        accepted = await ingest(deps.db, event, routes)
    metrics.webhooks_received.labels(event.provider, str(accepted.duplicate).lower()).inc()
    metrics.webhook_latency.labels(event.provider).observe(time.perf_counter() - started)
    return accepted


class WebhookController(Controller):
    path = BASE_PATH
    tags = ["webhooks"]

    @post(
        "/stripe",
        status_code=200,
        summary="Receive a signed Stripe webhook",
        operation_class=raw_json_body(
            "A Stripe event, exactly as Stripe signed it", STRIPE_EXAMPLE
        ),
        description=(
            "Verifies `Stripe-Signature` (any matching v1, ±STRIPE_TOLERANCE_SECONDS), stores "
            "the event and its raw body, and enqueues one job per route in the same "
            "transaction. 200 means committed; a duplicate event id answers "
            '`{"duplicate": true}` and creates nothing.'
        ),
        responses=ERRORS,
    )
    async def stripe_webhook(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[RoutingTable],
    ) -> WebhookAccepted:
        settings = deps.settings.webhooks
        with counted_rejections("stripe"):
            body = await read_body(request)
            header = request.headers.get("stripe-signature")
            verify_stripe(
                secret=require_secret(settings.stripe_secret, "STRIPE_WEBHOOK_SECRET"),
                header=header,
                body=body,
                now=time.time(),
                tolerance=settings.stripe_tolerance_seconds,
            )
            event = decode_event(body, StripeEventIn)
        incoming = IncomingEvent(
            provider="stripe",
            event_id=event.id,
            event_type=event.type,
            raw_body=body,
            payload_json=body.decode(),
            signature=header,
        )
        return await accept(deps, routing, incoming)

    @post(
        "/resend",
        status_code=200,
        summary="Receive a signed Resend (Svix) webhook",
        operation_class=raw_json_body("A Resend event, exactly as Svix signed it", RESEND_EXAMPLE),
        description=(
            "Verifies the `svix-*` headers (±5 minutes), stores the event keyed by `svix-id` "
            "and queues `mimic.tasks.handle_email_delivery_event` for `email.*` events, which "
            "moves the matching notification's status and timeline. Same answers as Stripe's."
        ),
        responses=ERRORS,
    )
    async def resend_webhook(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[RoutingTable],
    ) -> WebhookAccepted:
        with counted_rejections("resend"):
            body = await read_body(request)
            msg_id = verify_svix(
                secret=require_secret(
                    deps.settings.webhooks.resend_secret, "RESEND_WEBHOOK_SECRET"
                ),
                headers=request.headers,
                body=body,
                now=time.time(),
            )
            event = decode_event(body, ResendEventIn)
        incoming = IncomingEvent(
            provider="resend",
            event_id=msg_id,
            event_type=event.type,
            raw_body=body,
            payload_json=body.decode(),
            signature=request.headers.get("svix-signature"),
        )
        return await accept(deps, routing, incoming)

    @post(
        "/postmark",
        status_code=200,
        summary="Receive a Postmark webhook (HTTP Basic credentials in the webhook URL)",
        operation_class=raw_json_body("A Postmark webhook record", POSTMARK_EXAMPLE),
        description=(
            "Postmark does not sign webhooks: configure the URL as "
            "`https://postmark:<POSTMARK_WEBHOOK_SECRET>@<host>/api/v1/gateway/webhooks/postmark`. "
            "Delivery, Bounce, SpamComplaint, Open and Click events update the matching "
            "notification. Wrong or missing credentials: 401, nothing stored."
        ),
        responses={
            **ERRORS,
            401: ResponseSpec(ErrorBody, description="Missing or wrong credentials"),
        },
    )
    async def postmark_webhook(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[RoutingTable],
    ) -> WebhookAccepted:
        with counted_rejections("postmark"):
            verify_basic_auth(
                secret=require_secret(
                    deps.settings.webhooks.postmark_secret, "POSTMARK_WEBHOOK_SECRET"
                ),
                header=request.headers.get("authorization"),
            )
            body = await read_body(request)
            event = decode_event(body, PostmarkEventIn)
            payload = msgspec.json.decode(body)
        incoming = IncomingEvent(
            provider="postmark",
            event_id=postmark_event_id(payload),
            event_type=event.RecordType,
            raw_body=body,
            payload_json=body.decode(),
            signature=None,
        )
        return await accept(deps, routing, incoming)


class StripeTestController(Controller):
    """Dev only: the app adds this controller only when MIMIC_ENV=dev (404 elsewhere)."""

    path = BASE_PATH
    tags = ["webhooks"]

    @post(
        "/stripe/test",
        status_code=200,
        summary="Dev only: an unsigned Stripe event through the same pipeline",
        operation_class=raw_json_body(
            "A Stripe event without a signature; `type` is required, `id` optional",
            STRIPE_TEST_EXAMPLE,
        ),
        description="Exists only when MIMIC_ENV=dev (404 elsewhere). `id` defaults to evt_test_….",
        responses=ERRORS,
    )
    async def stripe_test_webhook(
        self,
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[RoutingTable],
    ) -> WebhookAccepted:
        with counted_rejections("stripe"):
            body = await read_body(request)
            event = decode_event(body, StripeTestEventIn)
            payload = msgspec.json.decode(body)
            if not isinstance(payload, dict):
                raise BadRequest("event must be a JSON object", code="invalid_event")
        event_id = event.id or f"evt_test_{uuid.uuid4().hex[:24]}"
        payload["id"] = event_id
        incoming = IncomingEvent(
            provider="stripe",
            event_id=event_id,
            event_type=event.type,
            raw_body=body,
            payload_json=msgspec.json.encode(payload).decode(),
            signature=None,
        )
        return await accept(deps, routing, incoming)
