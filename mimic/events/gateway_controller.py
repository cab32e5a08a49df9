"""The admin API of the gateway's configuration: destinations, routes, and the dry run."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from mimic.core.audit import audited
from mimic.core.auth import current_key_id, require_admin_key
from mimic.core.deps import Deps
from mimic.core.errors import error_spec
from mimic.events import gateway, route_test
from mimic.events.routes import Router
from mimic.events.schemas import (
    DestinationIn,
    DestinationOut,
    DestinationPatch,
    RotateIn,
    RouteIn,
    RouteOut,
    RoutePatch,
    RouteTestIn,
    RouteTestOut,
    WebhookProvider,
)

ERRORS = {
    400: error_spec("A field is invalid; the detail names it"),
    401: error_spec("Missing, unknown or revoked API key"),
    403: error_spec("A tenant key: these routes need an admin key"),
}
NOT_FOUND = {404: error_spec("No such destination or route")}
MANAGED = {
    409: error_spec(
        "Defined by MIMIC_ROUTES_FILE or by settings (managed_by_config), or a name taken"
    )
}
Force = Annotated[
    bool,
    QueryParameter(
        description="Delete its routes too, and fail its unfinished deliveries with "
        "destination_deleted"
    ),
]


class DestinationsController(Controller):
    path = "/api/v1/gateway/destinations"
    guards = [require_admin_key]
    tags = ["gateway config"]
    security = [{"apiKey": []}, {"bearer": []}]

    @get("/", summary="Every destination", responses=ERRORS)
    async def list_destinations(self, deps: NamedDependency[Deps]) -> list[DestinationOut]:
        return await gateway.list_destinations(deps.db)

    @post(
        "/",
        status_code=201,
        summary="Create a destination",
        description=(
            "An internal service that receives deliveries. `api_key` is sealed at rest and "
            "never shown again (only its last 4). With `signing: true` every delivery is signed "
            "per Standard Webhooks (`webhook-id` = the delivery id); the `whsec_` secret is in "
            "this answer only (`signing_secret`)."
        ),
        responses={**ERRORS, **MANAGED},
    )
    async def create_destination(
        self,
        data: JSONBody[DestinationIn],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
    ) -> DestinationOut:
        async with audited(deps.db, current_key_id(request), "create_destination", [data.name]):
            return await gateway.create_destination(deps.db, deps.keyring, data)

    @get("/{name:str}", summary="One destination", responses={**ERRORS, **NOT_FOUND})
    async def get_destination(
        self, name: FromPath[str], deps: NamedDependency[Deps]
    ) -> DestinationOut:
        return await gateway.get_destination(deps.db, name)

    @patch(
        "/{name:str}",
        summary="Change a destination (only the fields given)",
        responses={**ERRORS, **NOT_FOUND, **MANAGED},
    )
    async def update_destination(
        self,
        name: FromPath[str],
        data: JSONBody[DestinationPatch],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
    ) -> DestinationOut:
        async with audited(deps.db, current_key_id(request), "update_destination", [name]):
            return await gateway.update_destination(deps.db, deps.keyring, name, data)

    @delete(
        "/{name:str}",
        status_code=200,
        summary="Delete a destination",
        description=(
            "409 `destination_in_use` while routes send to it or deliveries to it are "
            "unfinished, unless `?force=true`: its routes are deleted and those deliveries "
            "fail with `destination_deleted`."
        ),
        responses={**ERRORS, **NOT_FOUND, **MANAGED},
    )
    async def delete_destination(
        self,
        name: FromPath[str],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        force: Force = False,
    ) -> gateway.Deleted:
        key = current_key_id(request)
        async with audited(deps.db, key, "delete_destination", [name]) as entry:
            deleted = await gateway.delete_destination(deps.db, name, force=force)
            entry.detail = {
                "force": force,
                "routes_deleted": deleted.routes_deleted,
                "deliveries_failed": deleted.deliveries_failed,
            }
        return deleted

    @post(
        "/{name:str}/pause",
        status_code=200,
        summary="Pause a destination: its deliveries wait (status paused), nothing is dropped",
        responses={**ERRORS, **NOT_FOUND},
    )
    async def pause(
        self, name: FromPath[str], request: Request[Any, Any, Any], deps: NamedDependency[Deps]
    ) -> DestinationOut:
        async with audited(deps.db, current_key_id(request), "pause_destination", [name]):
            return await gateway.set_state(deps.db, name, "paused")

    @post(
        "/{name:str}/disable",
        status_code=200,
        summary="Disable a destination: new events no longer go to it; waiting ones wait",
        responses={**ERRORS, **NOT_FOUND},
    )
    async def disable(
        self, name: FromPath[str], request: Request[Any, Any, Any], deps: NamedDependency[Deps]
    ) -> DestinationOut:
        async with audited(deps.db, current_key_id(request), "disable_destination", [name]):
            return await gateway.set_state(deps.db, name, "disabled")

    @post(
        "/{name:str}/resume",
        status_code=200,
        summary="Resume a paused or disabled destination: waiting deliveries go, oldest first",
        responses={**ERRORS, **NOT_FOUND},
    )
    async def resume(
        self, name: FromPath[str], request: Request[Any, Any, Any], deps: NamedDependency[Deps]
    ) -> DestinationOut:
        async with audited(deps.db, current_key_id(request), "resume_destination", [name]):
            return await gateway.set_state(deps.db, name, "active")

    @post(
        "/{name:str}/rotate-secret",
        status_code=200,
        summary="A new signing secret; the previous one keeps signing for a while",
        description=(
            "Deliveries carry a signature by each valid secret (space-separated in "
            "`webhook-signature`), so a consumer can switch to the new one within "
            "`previous_valid_seconds` (default one day). The new secret is in this answer only."
        ),
        responses={**ERRORS, **NOT_FOUND, **MANAGED},
    )
    async def rotate_secret(
        self,
        name: FromPath[str],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        data: JSONBody[RotateIn | None] = None,
    ) -> DestinationOut:
        key = current_key_id(request)
        async with audited(deps.db, key, "rotate_destination_secret", [name]):
            return await gateway.rotate_secret(deps.db, deps.keyring, name, data or RotateIn())


class RoutesController(Controller):
    path = "/api/v1/gateway/routes"
    guards = [require_admin_key]
    tags = ["gateway config"]
    security = [{"apiKey": []}, {"bearer": []}]

    @get("/", summary="Every route, oldest first", responses=ERRORS)
    async def list_routes(
        self,
        deps: NamedDependency[Deps],
        destination: FromQuery[str | None] = None,
        provider: FromQuery[WebhookProvider | None] = None,
    ) -> list[RouteOut]:
        return await gateway.list_routes(deps.db, destination=destination, provider=provider)

    @post(
        "/",
        status_code=201,
        summary="Create a route",
        description=(
            "Events of `provider` whose type matches one of `event_types` (exact, a prefix "
            "`customer.subscription.*`, or `*`) and whose payload passes every `filter` "
            "condition go to `destination`, at its URL plus `path`, as `body`: `envelope` "
            "(Mimic's JSON envelope), `event` (the provider's bytes as received) or `inkpass` "
            "(inkpass's contract). Applies to the next event every API process receives."
        ),
        responses={**ERRORS, **MANAGED},
    )
    async def create_route(
        self,
        data: JSONBody[RouteIn],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[Router],
    ) -> RouteOut:
        key = current_key_id(request)
        async with audited(deps.db, key, "create_route", [data.name or ""]) as entry:
            created = await gateway.create_route(deps.db, routing, data)
            entry.targets = [str(created.id)]
            entry.detail = {"name": created.name, "destination": created.destination}
        return created

    @post(
        "/test",
        status_code=200,
        summary="Dry run: which routes match an event, and what each destination would get",
        description=(
            "Give a stored event's `event_id`, or a `provider` and a `payload`. Nothing is "
            "stored or sent; secrets in the headers shown are masked."
        ),
        responses={**ERRORS, 404: error_spec("No such event")},
    )
    async def test_routes(
        self,
        data: JSONBody[RouteTestIn],
        deps: NamedDependency[Deps],
        routing: NamedDependency[Router],
    ) -> RouteTestOut:
        return await route_test.dry_run(deps, routing, data)

    @get("/{route_id:uuid}", summary="One route", responses={**ERRORS, **NOT_FOUND})
    async def get_route(
        self, route_id: FromPath[uuid.UUID], deps: NamedDependency[Deps]
    ) -> RouteOut:
        return await gateway.get_route(deps.db, route_id)

    @patch(
        "/{route_id:uuid}",
        summary="Change a route (only the fields given; provider stays)",
        responses={**ERRORS, **NOT_FOUND, **MANAGED},
    )
    async def update_route(
        self,
        route_id: FromPath[uuid.UUID],
        data: JSONBody[RoutePatch],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
        routing: NamedDependency[Router],
    ) -> RouteOut:
        key = current_key_id(request)
        async with audited(deps.db, key, "update_route", [str(route_id)]):
            return await gateway.update_route(deps.db, routing, route_id, data)

    @delete(
        "/{route_id:uuid}",
        status_code=200,
        summary="Delete a route (deliveries it made keep its id)",
        responses={**ERRORS, **NOT_FOUND, **MANAGED},
    )
    async def delete_route(
        self,
        route_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        deps: NamedDependency[Deps],
    ) -> RouteOut:
        key = current_key_id(request)
        async with audited(deps.db, key, "delete_route", [str(route_id)]):
            return await gateway.delete_route(deps.db, route_id)


CONTROLLERS = [DestinationsController, RoutesController]
