"""Webhook endpoints: size limit -> verify -> parse -> one transaction -> 200."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ControllerRouterHandler

from mimic import metrics
from mimic.billing.inkpass import stripe_routes
from mimic.deps import Deps
from mimic.egress.tracking import email_routes, postmark_event_id
from mimic.errors import BadRequest, ErrorBody, NotConfigured, PayloadTooLarge, Unauthorized
from mimic.ingress.store import Accepted, IncomingEvent, Route, ingest
from mimic.ingress.verify import verify_basic_auth, verify_stripe, verify_svix
from mimic.settings import Secret, Settings

logger = logging.getLogger(__name__)

STRIPE_PATH = "/api/v1/gateway/webhooks/stripe"
RESEND_PATH = "/api/v1/gateway/webhooks/resend"
POSTMARK_PATH = "/api/v1/gateway/webhooks/postmark"


class WebhookAccepted(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    duplicate: bool


class StripeEventIn(msgspec.Struct, kw_only=True):
    """The fields Mimic needs from a Stripe event; everything else is kept in the payload."""

    id: str
    type: str


class StripeTestEventIn(msgspec.Struct, kw_only=True):
    """The seed's unsigned example: ``id`` is optional."""

    type: str
    id: str | None = None


def _error_specs() -> dict[int, ResponseSpec]:
    return {
        400: ResponseSpec(ErrorBody, description="Rejected: bad signature, header or JSON"),
        413: ResponseSpec(ErrorBody, description="Body over WEBHOOK_MAX_BODY_BYTES"),
        503: ResponseSpec(ErrorBody, description="Not stored; the provider should retry"),
    }


@contextlib.contextmanager
def counted_rejections(provider: str) -> Iterator[None]:
    """Log and count every 4xx rejection; nothing has been stored when one is raised."""
    try:
        yield
    except (BadRequest, Unauthorized, PayloadTooLarge) as exc:
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


def require_secret(secret: Secret | None, name: str) -> str:
    if secret is None:
        raise NotConfigured(f"{name} is not configured")
    return secret.get()


async def accept(deps: Deps, event: IncomingEvent, routes: list[Route]) -> WebhookAccepted:
    started = time.perf_counter()
    with counted_rejections(event.provider):
        accepted: Accepted = await ingest(deps.db, event, routes)
    metrics.webhooks_received.labels(event.provider, str(accepted.duplicate).lower()).inc()
    metrics.webhook_latency.labels(event.provider).observe(time.perf_counter() - started)
    return WebhookAccepted(event_id=accepted.event_id, duplicate=accepted.duplicate)


class ResendEventIn(msgspec.Struct, kw_only=True):
    type: str


class PostmarkEventIn(msgspec.Struct, kw_only=True):
    RecordType: str
    MessageID: str


def routes(settings: Settings) -> list[ControllerRouterHandler]:
    limit = settings.webhook_max_body_bytes

    @post(
        STRIPE_PATH,
        status_code=200,
        request_max_body_size=limit,
        tags=["webhooks"],
        summary="Receive a signed Stripe webhook",
        description=(
            "Verifies `Stripe-Signature` (any matching v1, ±STRIPE_TOLERANCE_SECONDS), stores "
            "the event and its raw body, and enqueues one job per route in the same "
            "transaction. 200 means committed; a duplicate event id answers "
            '`{"duplicate": true}` and creates nothing.'
        ),
        responses=_error_specs(),
    )
    async def stripe_webhook(request: Request[Any, Any, Any], state: State) -> WebhookAccepted:
        deps: Deps = state.deps
        with counted_rejections("stripe"):
            body = await read_body(request)
            header = request.headers.get("stripe-signature")
            verify_stripe(
                secret=require_secret(settings.stripe_webhook_secret, "STRIPE_WEBHOOK_SECRET"),
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
        return await accept(deps, incoming, stripe_routes(event.type))

    @post(
        f"{STRIPE_PATH}/test",
        status_code=200,
        request_max_body_size=limit,
        tags=["webhooks"],
        summary="Dev only: an unsigned Stripe event through the same pipeline",
        description="Exists only when MIMIC_ENV=dev (404 elsewhere). `id` defaults to evt_test_….",
        responses=_error_specs(),
    )
    async def stripe_test_webhook(request: Request[Any, Any, Any], state: State) -> WebhookAccepted:
        deps: Deps = state.deps
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
        return await accept(deps, incoming, stripe_routes(event.type))

    @post(
        RESEND_PATH,
        status_code=200,
        request_max_body_size=limit,
        tags=["webhooks"],
        summary="Receive a signed Resend (Svix) webhook",
        description=(
            "Verifies the `svix-*` headers (±5 minutes), stores the event keyed by `svix-id` "
            "and queues `mimic.tasks.handle_email_delivery_event` for `email.*` events, which "
            "moves the matching notification's status and timeline. Same answers as Stripe's."
        ),
        responses=_error_specs(),
    )
    async def resend_webhook(request: Request[Any, Any, Any], state: State) -> WebhookAccepted:
        deps: Deps = state.deps
        with counted_rejections("resend"):
            body = await read_body(request)
            msg_id = verify_svix(
                secret=require_secret(settings.resend_webhook_secret, "RESEND_WEBHOOK_SECRET"),
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
        return await accept(deps, incoming, email_routes("resend", event.type))

    @post(
        POSTMARK_PATH,
        status_code=200,
        request_max_body_size=limit,
        tags=["webhooks"],
        summary="Receive a Postmark webhook (HTTP Basic credentials in the webhook URL)",
        description=(
            "Postmark does not sign webhooks: configure the URL as "
            "`https://postmark:<POSTMARK_WEBHOOK_SECRET>@<host>/api/v1/gateway/webhooks/postmark`. "
            "Delivery, Bounce, SpamComplaint, Open and Click events update the matching "
            "notification. Wrong or missing credentials: 401, nothing stored."
        ),
        responses={
            **_error_specs(),
            401: ResponseSpec(ErrorBody, description="Missing or wrong credentials"),
        },
    )
    async def postmark_webhook(request: Request[Any, Any, Any], state: State) -> WebhookAccepted:
        deps: Deps = state.deps
        with counted_rejections("postmark"):
            verify_basic_auth(
                secret=require_secret(settings.postmark_webhook_secret, "POSTMARK_WEBHOOK_SECRET"),
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
        return await accept(deps, incoming, email_routes("postmark", event.RecordType))

    handlers: list[ControllerRouterHandler] = [stripe_webhook, resend_webhook, postmark_webhook]
    if settings.is_dev:
        handlers.append(stripe_test_webhook)
    return handlers
