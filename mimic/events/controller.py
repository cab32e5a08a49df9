"""The admin API of the gateway: events, deliveries, replay, retry, bulk retry."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from mimic.core.audit import audited
from mimic.core.auth import current_key_id, require_admin_key
from mimic.core.deps import Deps
from mimic.core.errors import error_spec
from mimic.core.pagination import known_query_only
from mimic.events import admin
from mimic.events.routes import Router
from mimic.events.schemas import (
    BulkRetryIn,
    BulkRetryOut,
    DeliveryPage,
    DeliveryStatus,
    EventDetail,
    EventPage,
    EventStatus,
    Replayed,
    Retried,
)

ERRORS = {
    400: error_spec("A bad filter, date, limit, id or cursor"),
    401: error_spec("Missing, unknown or revoked API key"),
    403: error_spec("A tenant key: these routes need an admin key"),
}
NOT_FOUND = {404: error_spec("No such event or delivery")}
Limit = Annotated[int, QueryParameter(ge=1, le=250, description="page size (1-250)")]
Since = Annotated[
    datetime.datetime | None,
    QueryParameter(description="received at or after (ISO 8601; UTC when no offset)"),
]
Until = Annotated[datetime.datetime | None, QueryParameter(description="received before")]


class GatewayAdminController(Controller):
    path = "/api/v1/gateway/webhooks"
    guards = [require_admin_key]
    tags = ["gateway admin"]
    security = [{"apiKey": []}, {"bearer": []}]

    @get(
        "/events",
        summary="Stored events, newest first (keyset pagination)",
        responses=ERRORS,
        guards=[known_query_only],
    )
    async def list_events(
        self,
        deps: NamedDependency[Deps],
        provider: FromQuery[str | None] = None,
        status: FromQuery[EventStatus | None] = None,
        event_type: FromQuery[str | None] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
    ) -> EventPage:
        return await admin.list_events(
            deps.reads,
            provider=provider,
            status=status,
            event_type=event_type,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    @get(
        "/events/{event_id:str}",
        summary="One event with its deliveries and their jobs",
        description=(
            "`event_id` is Mimic's uuid, or the provider's own id (`evt_...`, a `svix-id`) "
            "with `?provider=stripe|resend|postmark`."
        ),
        responses={**ERRORS, **NOT_FOUND},
    )
    async def get_event(
        self,
        event_id: FromPath[str],
        deps: NamedDependency[Deps],
        provider: FromQuery[str | None] = None,
    ) -> EventDetail:
        return await admin.get_event(deps.reads, event_id, provider, primary=deps.db)

    @post(
        "/events/{event_id:str}/replay",
        status_code=200,
        summary="Route an event again by today's routes",
        description=(
            "New deliveries and jobs are created in one transaction; the earlier deliveries "
            "stay (marked `superseded`) for audit. The answer lists the routes taken."
        ),
        responses={**ERRORS, **NOT_FOUND},
    )
    async def replay(
        self,
        event_id: FromPath[str],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[Router],
    ) -> Replayed:
        event_uuid = admin.parse_uuid(event_id, "event_id", by_provider=False)
        async with audited(deps.db, current_key_id(request), "replay", [str(event_uuid)]) as entry:
            replayed = await admin.replay(deps.db, routing, event_uuid)
            entry.detail = {"delivery_ids": [str(d) for d in replayed.delivery_ids]}
        return replayed

    @get(
        "/deliveries",
        summary="Deliveries, newest first: with status=failed, the dead letters",
        guards=[known_query_only],
        responses=ERRORS,
    )
    async def list_deliveries(
        self,
        deps: NamedDependency[Deps],
        status: FromQuery[DeliveryStatus | None] = None,
        target: FromQuery[str | None] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
    ) -> DeliveryPage:
        return await admin.list_deliveries(
            deps.reads,
            status=status,
            target=target,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    @post(
        "/deliveries/{delivery_id:uuid}/retry",
        status_code=200,
        summary="One more attempt for a failed delivery",
        description=(
            "A fresh attempt budget and a new job; the same `Idempotency-Key` (the delivery "
            "id), so the target can still deduplicate. 409 unless the delivery is `failed`."
        ),
        responses={
            **ERRORS,
            **NOT_FOUND,
            409: error_spec("Not failed"),
        },
    )
    async def retry(
        self,
        delivery_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
    ) -> Retried:
        async with audited(deps.db, current_key_id(request), "retry", [str(delivery_id)]):
            return await admin.retry_delivery(deps.db, delivery_id)

    @post(
        "/deliveries/retry",
        status_code=202,
        summary="Retry every failed delivery matching the filters, as a background job",
        description=(
            "At most 10,000 per call (`limit`). Answers at once with the bulk retry's id; "
            "read its progress at `GET /api/v1/gateway/webhooks/deliveries/retry/{id}`."
        ),
        responses=ERRORS,
    )
    async def bulk_retry(
        self,
        data: JSONBody[BulkRetryIn],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
    ) -> BulkRetryOut:
        key_id = current_key_id(request)
        async with audited(deps.db, key_id, "bulk_retry", []) as entry:
            started = await admin.start_bulk_retry(deps.db, data, key_id)
            entry.targets = [str(started.id)]
            entry.detail = started.filters
        return started

    @get(
        "/deliveries/retry/{bulk_id:uuid}",
        summary="A bulk retry's progress",
        responses={**ERRORS, **NOT_FOUND},
    )
    async def bulk_retry_progress(
        self, bulk_id: FromPath[uuid.UUID], deps: NamedDependency[Deps]
    ) -> BulkRetryOut:
        return await admin.bulk_retry_progress(deps.db, bulk_id)
