"""The routes' dry run: which routes an event matches, and what each destination would get.

The same matching and the same request builder as a real event and a real delivery; nothing
is stored or sent.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import msgspec

from mimic.core.deps import Deps
from mimic.core.errors import BadRequest
from mimic.events import admin, gateway
from mimic.events.delivery import build_request, destinations
from mimic.events.routes import Router
from mimic.events.schemas import (
    DeliveryContext,
    PlannedRequest,
    RouteMatchOut,
    RouteTestIn,
    RouteTestOut,
    WebhookProvider,
)

#: Where each provider's payload names its event type (as the webhook endpoints read it).
TYPE_FIELD = {"stripe": "type", "resend": "type", "postmark": "RecordType"}
#: The delivery id a dry run shows (a real delivery has its own).
EXAMPLE_DELIVERY = uuid.UUID("00000000-0000-4000-8000-000000000000")


def _masked(headers: dict[str, str], secret_header: str | None) -> dict[str, str]:
    shown = dict(headers)
    if secret_header and secret_header in shown:
        shown[secret_header] = "****" + shown[secret_header][-4:]
    if "webhook-signature" in shown:
        shown["webhook-signature"] = " ".join(
            "v1,<signature>" for _ in shown["webhook-signature"].split()
        )
    return shown


async def dry_run(deps: Deps, router: Router, data: RouteTestIn) -> RouteTestOut:
    provider: WebhookProvider
    payload: dict[str, Any]
    received: datetime.datetime | None = None
    if data.event_id is not None:
        event = await admin.get_event(deps.db, str(data.event_id), None)
        provider = msgspec.convert(event.provider, WebhookProvider)
        payload, event_type = event.payload, event.event_type
        event_uuid, provider_id, received = event.id, event.event_id, event.received_at
    elif data.provider is not None and data.payload is not None:
        provider, payload = data.provider, data.payload
        found = data.event_type or payload.get(TYPE_FIELD[provider])
        if not isinstance(found, str) or not found:
            raise BadRequest(
                f"event_type: the payload has no {TYPE_FIELD[provider]!r}; give event_type",
                code="invalid_event",
            )
        event_type = found
        event_uuid, provider_id = uuid.UUID(int=0), str(payload.get("id", "example"))
    else:
        raise BadRequest(
            "give event_id (a stored event), or provider and payload", code="invalid_test"
        )
    stored = await gateway.route_set(deps.db, router, refresh=True)
    matched = router.routes_for(stored, provider, event_type, payload)
    details = {r.id: r for r in await gateway.list_routes(deps.db, provider=provider)}
    cache = destinations(deps)
    await cache.reload(deps.db)
    now = datetime.datetime.now(datetime.UTC)
    out: list[RouteMatchOut] = []
    handlers: list[str] = []
    for route in matched:
        if route.route_id is None:
            handlers.append(route.task_name)
            continue
        destination = await cache.get(deps.db, route.target_service, cache.version)
        if destination is None or route.route_id not in details:
            continue  # deleted since the routes were read
        context = DeliveryContext(
            delivery_id=EXAMPLE_DELIVERY,
            attempt=1,
            task_name=route.task_name,
            target_service=route.target_service,
            event_uuid=event_uuid,
            provider=provider,
            event_id=provider_id,
            event_type=event_type,
            payload=payload,
            route_id=route.route_id,
            path=route.path,
            body=route.body,
            received_at=received or now,
        )
        request = build_request(context, destination, now)
        out.append(
            RouteMatchOut(
                route=details[route.route_id],
                destination_state=destination.state,
                request=PlannedRequest(
                    method="POST",
                    url=request.url,
                    headers=_masked(request.headers, destination.api_key_header),
                    body=msgspec.json.decode(request.body),
                ),
            )
        )
    return RouteTestOut(
        provider=provider,
        event_type=event_type,
        matched=out,
        handlers=handlers,
        ignored=not matched,
    )
