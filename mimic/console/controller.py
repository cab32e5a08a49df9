"""The operator console: pages rendered on the server from Jinja templates, plain HTML forms.

Every action calls the service the admin API calls (``events.admin``, ``events.gateway``,
``email.suppression``, ...) inside the same audit-log wrapper, so the two never disagree.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from mimic.console import session
from mimic.core import audit
from mimic.core.audit import audited
from mimic.core.db import load_queries
from mimic.core.deps import Deps
from mimic.core.errors import BadRequest, MimicError
from mimic.core.settings import Settings
from mimic.email import repository as email_repository
from mimic.email import suppression
from mimic.email.rendering import Templates
from mimic.events import admin, gateway, route_test
from mimic.events.routes import Router as EventRouter
from mimic.events.schemas import (
    BulkRetryIn,
    DestinationIn,
    DestinationPatch,
    Policy,
    RouteIn,
    RoutePatch,
    RouteTestIn,
)

queries = load_queries("mimic.console")
HERE = pathlib.Path(__file__).parent
STATIC = "/console/static"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
#: The page's security headers: only Mimic's own origin, no inline script, never framed.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
OPEN = ("/console/login", STATIC)


def _deps(request: Request[Any, Any, Any]) -> Deps:
    found: Deps = request.app.state.deps
    return found


def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    found: dict[str, str] = getattr(request.state, "console_form", {})
    return found


def render(request: Request[Any, Any, Any], template: str, **context: Any) -> Response[str]:
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    html = _env.get_template(template).render(
        csrf=session.csrf_token(request),
        key=getattr(request.state, "console_key", None),
        path=request.url.path,
        flash=flash,
        static=STATIC,
        **context,
    )
    return Response(html, media_type=MediaType.HTML, headers=HEADERS)


def back(request: Request[Any, Any, Any], to: str, message: str | None = None) -> Redirect:
    if message:
        request.session["flash"] = message
    return Redirect(to, status_code=303, headers=HEADERS)


async def attempt(
    request: Request[Any, Any, Any], done: str, failed: str, action: Callable[[], Awaitable[Any]]
) -> Redirect:
    """Run an action; back to ``done`` with a note, or to ``failed`` with the refusal."""
    try:
        result = await action()
    except MimicError as exc:
        return back(request, failed, f"Refused ({exc.code}): {exc.message}")
    return back(request, done, result if isinstance(result, str) else None)


async def guard(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Before every console request: a live session (else the sign-in page) and, for a POST,
    the form's CSRF token."""
    path = request.url.path
    if path.startswith(OPEN):
        return None
    key = session.signed_in_key(request, _deps(request).settings)
    if key is None:
        if request.method == "GET":
            return Redirect("/console/login", status_code=303, headers=HEADERS)
        return Response("Signed out: sign in again.", status_code=401, headers=HEADERS)
    request.state.console_key = key
    if request.method == "POST":
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not session.csrf_ok(request, form.get("csrf")):
            return Response(
                "This form is stale or did not come from the console (no CSRF token): reload "
                "the page and try again.",
                status_code=403,
                headers=HEADERS,
            )
        request.state.console_form = form
    return None


# --- signing in -------------------------------------------------------------------------------


@get("/login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Response[str]:
    return render(request, "login.html", error=None)


@post("/login", include_in_schema=False, status_code=200)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    presented = form.get("key")
    key = session.admin_key_id(
        _deps(request).settings, presented if isinstance(presented, str) else ""
    )
    if key is None:
        return render(
            request,
            "login.html",
            error="That is not an admin key (tenant keys cannot sign in to the console).",
        )
    session.sign_in(request, key)
    return Redirect("/console", status_code=303, headers=HEADERS)


@post("/logout", include_in_schema=False, status_code=200)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    request.clear_session()
    return Redirect("/console/login", status_code=303, headers=HEADERS)


# --- overview ---------------------------------------------------------------------------------


def _chart(rows: list[Any], since: datetime.datetime, hours: int) -> dict[str, Any]:
    """Bars per hour, as SVG coordinates (rendered on the server; no script needed)."""
    slots = {
        (since + datetime.timedelta(hours=i)).replace(minute=0, second=0, microsecond=0): (0, 0)
        for i in range(hours + 1)
    }
    for r in rows:
        slots[r["hour"]] = (r["received"], r["failed"])
    top = max([1, *(v[0] for v in slots.values())])
    width = 720 / len(slots)
    bars = [
        {
            "x": round(i * width, 1),
            "w": round(max(width - 1, 1), 1),
            "h": round(160 * received / top, 1),
            "fh": round(160 * failed / top, 1),
            "label": f"{hour:%Y-%m-%d %H}:00 UTC: {received} received, {failed} failed",
        }
        for i, (hour, (received, failed)) in enumerate(sorted(slots.items()))
    ]
    return {"bars": bars, "top": top}


@get("/", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], hours: FromQuery[int] = 24) -> Response[str]:
    hours = min(max(hours, 1), 24 * 31)
    db = _deps(request).db
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)
    events = await db.fetch(queries["events_by_provider"], since)
    by_provider: dict[str, dict[str, int]] = {}
    for r in events:
        by_provider.setdefault(r["provider"], {})[r["status"]] = r["n"]
    destinations: dict[str, dict[str, int]] = {}
    for r in await db.fetch(queries["deliveries_by_destination"], since):
        destinations.setdefault(r["target_service"], {})[r["status"]] = r["n"]
    return render(
        request,
        "overview.html",
        hours=hours,
        by_provider=by_provider,
        destinations=destinations,
        emails={r["status"]: r["n"] for r in await db.fetch(queries["emails_by_status"], since)},
        suppressed=await db.fetchval(queries["suppressed_since"], since),
        queues=await db.fetch(queries["queues"]),
        circuits=await db.fetch(queries["open_circuits"]),
        resting=await db.fetch(queries["resting_destinations"]),
        chart=_chart(await db.fetch(queries["events_by_hour"], since), since, hours),
    )


# --- events and deliveries --------------------------------------------------------------------


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value else None


@get("/events", include_in_schema=False)
async def events(
    request: Request[Any, Any, Any],
    provider: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    event_type: FromQuery[str | None] = None,
    provider_event_id: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    db = _deps(request).db
    wanted = _blank(provider_event_id)
    if wanted:
        try:
            found = await admin.get_event(
                _deps(request).reads, wanted, _blank(provider) or "stripe", primary=db
            )
        except MimicError as exc:
            return render(
                request, "events.html", page=None, filters=request.query_params, error=exc.message
            )
        return Redirect(f"/console/events/{found.id}", status_code=303, headers=HEADERS)
    try:
        page = await admin.list_events(
            _deps(request).reads,
            provider=_blank(provider),
            status=_blank(status),
            event_type=_blank(event_type),
            since=None,
            until=None,
            limit=50,
            cursor=_blank(cursor),
        )
    except MimicError as exc:
        return render(
            request, "events.html", page=None, filters=request.query_params, error=exc.message
        )
    return render(request, "events.html", page=page, filters=request.query_params, error=None)


@get("/events/{event_id:uuid}", include_in_schema=False)
async def event(request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID]) -> Response[str]:
    db = _deps(request).db
    found = await admin.get_event(_deps(request).reads, str(event_id), None, primary=db)
    raw = await admin.raw_body(db, event_id)
    return render(
        request,
        "event.html",
        event=found,
        payload=json.dumps(found.payload, indent=2, sort_keys=True),
        raw=raw.decode("utf-8", errors="replace") if raw is not None else "",
    )


@get("/events/{event_id:uuid}/replay", include_in_schema=False)
async def replay_confirm(
    request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID]
) -> Response[str]:
    return render(
        request,
        "confirm.html",
        title="Replay this event?",
        action=request.url.path,
        detail=f"Event {event_id} is routed again by today's routes: new deliveries "
        "and jobs; the earlier deliveries stay, marked superseded.",
        back=f"/console/events/{event_id}",
    )


@post("/events/{event_id:uuid}/replay", include_in_schema=False, status_code=200)
async def replay(
    request: Request[Any, Any, Any],
    event_id: FromPath[uuid.UUID],
    routing: NamedDependency[EventRouter],
) -> Redirect:
    deps = _deps(request)

    async def act() -> str:
        async with audited(deps.db, request.state.console_key, "replay", [str(event_id)]) as e:
            done = await admin.replay(deps.db, routing, event_id)
            e.detail = {"delivery_ids": [str(d) for d in done.delivery_ids], "via": "console"}
        return f"Replayed: {len(done.delivery_ids)} new delivery(ies)."

    here = f"/console/events/{event_id}"
    return await attempt(request, here, here, act)


@get("/deliveries", include_in_schema=False)
async def deliveries(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = "failed",
    target: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    page = await admin.list_deliveries(
        _deps(request).reads,
        status=_blank(status),
        target=_blank(target),
        since=None,
        until=None,
        limit=50,
        cursor=_blank(cursor),
    )
    return render(request, "deliveries.html", page=page, filters=request.query_params)


@post("/deliveries/{delivery_id:uuid}/retry", include_in_schema=False, status_code=200)
async def retry(request: Request[Any, Any, Any], delivery_id: FromPath[uuid.UUID]) -> Redirect:
    db = _deps(request).db

    async def act() -> str:
        async with audited(db, request.state.console_key, "retry", [str(delivery_id)]):
            await admin.retry_delivery(db, delivery_id)
        return f"Delivery {delivery_id} queued again."

    to = _form(request).get("next") or "/console/deliveries"
    return await attempt(request, to, to, act)


@post("/deliveries/retry", include_in_schema=False, status_code=200)
async def bulk_retry(request: Request[Any, Any, Any]) -> Redirect:
    db, key = _deps(request).db, request.state.console_key
    filters = BulkRetryIn(target=_blank(_form(request).get("target")))
    try:
        async with audited(db, key, "bulk_retry", []) as entry:
            started = await admin.start_bulk_retry(db, filters, key)
            entry.targets, entry.detail = [str(started.id)], started.filters
    except MimicError as exc:
        return back(request, "/console/deliveries", f"Refused ({exc.code}): {exc.message}")
    return back(request, f"/console/deliveries/retry/{started.id}")


@get("/deliveries/retry/{bulk_id:uuid}", include_in_schema=False)
async def bulk_progress(
    request: Request[Any, Any, Any], bulk_id: FromPath[uuid.UUID]
) -> Response[str]:
    found = await admin.bulk_retry_progress(_deps(request).db, bulk_id)
    return render(request, "bulk.html", bulk=found)


# --- destinations and routes -------------------------------------------------------------------


def _number(form: dict[str, str], name: str, kind: type[Any]) -> Any:
    value = (form.get(name) or "").strip()
    return kind(value) if value else None


def _policy(form: dict[str, str]) -> dict[str, Any]:
    fields = {
        "timeout_seconds": float,
        "max_attempts": int,
        "rate_per_second": float,
        "circuit_failures": int,
    }
    found: dict[str, Any] = {}
    for name, kind in fields.items():
        try:
            value = _number(form, name, kind)
        except ValueError:
            raise BadRequest(f"{name}: not a number", code="invalid_policy") from None
        if value is not None:
            found[name] = value
    return found


def _convert(data: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc), code="bad_request") from None


@get("/destinations", include_in_schema=False)
async def destinations(request: Request[Any, Any, Any]) -> Response[str]:
    db = _deps(request).db
    return render(
        request,
        "destinations.html",
        destinations=await gateway.list_destinations(db),
        routes=await gateway.list_routes(db),
        secret=request.session.pop("secret", None),
    )


@post("/destinations", include_in_schema=False, status_code=200)
async def create_destination(request: Request[Any, Any, Any]) -> Redirect:
    deps, form = _deps(request), _form(request)

    async def act() -> str:
        body: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "url": form.get("url", "").strip(),
            "signing": form.get("signing") == "on",
            "policy": msgspec.to_builtins(Policy(**_policy(form))),
        }
        if (form.get("api_key") or "").strip():
            body["api_key"] = {
                "value": form["api_key"].strip(),
                "header": (form.get("api_key_header") or "X-API-Key").strip(),
            }
        data = _convert(body, DestinationIn)
        async with audited(deps.db, request.state.console_key, "create_destination", [data.name]):
            made = await gateway.create_destination(deps.db, deps.keyring, data)
        if made.signing_secret:
            request.session["secret"] = made.signing_secret
        return f"Destination {made.name} created."

    return await attempt(request, "/console/destinations", "/console/destinations", act)


@get("/destinations/{name:str}", include_in_schema=False)
async def destination(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
    db = _deps(request).db
    found = await gateway.get_destination(db, name)
    return render(
        request,
        "destination.html",
        destination=found,
        routes=await gateway.list_routes(db, destination=name),
    )


@post("/destinations/{name:str}", include_in_schema=False, status_code=200)
async def update_destination(request: Request[Any, Any, Any], name: FromPath[str]) -> Redirect:
    deps, form = _deps(request), _form(request)

    async def act() -> str:
        patch = _convert(
            {"url": (form.get("url") or "").strip() or None, "policy": _policy(form) or None},
            DestinationPatch,
        )
        if patch.policy is not None and "rate_per_second" not in _policy(form):
            patch = msgspec.structs.replace(
                patch, policy=msgspec.structs.replace(patch.policy, rate_per_second=msgspec.UNSET)
            )
        async with audited(deps.db, request.state.console_key, "update_destination", [name]):
            await gateway.update_destination(deps.db, deps.keyring, name, patch)
        return f"Destination {name} saved."

    here = f"/console/destinations/{name}"
    return await attempt(request, here, here, act)


STATES: dict[str, tuple[audit.Action, Any]] = {
    "pause": ("pause_destination", "paused"),
    "resume": ("resume_destination", "active"),
    "disable": ("disable_destination", "disabled"),
}


@post("/destinations/{name:str}/{action:str}", include_in_schema=False, status_code=200)
async def destination_action(
    request: Request[Any, Any, Any], name: FromPath[str], action: FromPath[str]
) -> Redirect:
    db, key = _deps(request).db, request.state.console_key
    here = f"/console/destinations/{name}"

    async def act() -> str:
        if action == "delete":
            force = _form(request).get("force") == "on"
            async with audited(db, key, "delete_destination", [name]) as entry:
                deleted = await gateway.delete_destination(db, name, force=force)
                entry.detail = {"force": force, "via": "console"}
            return (
                f"Destination {name} deleted ({deleted.routes_deleted} route(s), "
                f"{deleted.deliveries_failed} delivery(ies) failed)."
            )
        if action not in STATES:
            raise BadRequest(f"no action {action!r}", code="not_found")
        audit_action, state = STATES[action]
        async with audited(db, key, audit_action, [name]):
            await gateway.set_state(db, name, state)
        return f"Destination {name} is {state}."

    done = "/console/destinations" if action == "delete" else here
    return await attempt(request, done, here, act)


@post("/routes", include_in_schema=False, status_code=200)
async def create_route(
    request: Request[Any, Any, Any], routing: NamedDependency[EventRouter]
) -> Redirect:
    db, form = _deps(request).db, _form(request)

    async def act() -> str:
        conditions = []
        for line in (form.get("where") or "").splitlines():
            if line.strip():
                path, sep, value = line.strip().partition("=")
                if not sep:
                    raise BadRequest(f"filter: {line!r} is not path=value", code="invalid_filter")
                conditions.append({"path": path.strip(), "op": "eq", "value": value.strip()})
        body = {
            "provider": form.get("provider", ""),
            "event_types": [
                t.strip() for t in (form.get("event_types") or "").split(",") if t.strip()
            ],
            "destination": form.get("destination", ""),
            "name": _blank(form.get("name")),
            "path": (form.get("path") or "").strip(),
            "body": form.get("body") or "envelope",
            "filter": conditions,
        }
        data = _convert(body, RouteIn)
        async with audited(db, request.state.console_key, "create_route", [data.name or ""]) as e:
            made = await gateway.create_route(db, routing, data)
            e.targets = [str(made.id)]
        return f"Route {made.name or made.id} created."

    return await attempt(request, "/console/destinations", "/console/destinations", act)


@get("/routes/{route_id:uuid}", include_in_schema=False)
async def route_page(
    request: Request[Any, Any, Any], route_id: FromPath[uuid.UUID]
) -> Response[str]:
    db = _deps(request).db
    return render(
        request,
        "route.html",
        route=await gateway.get_route(db, route_id),
        destinations=await gateway.list_destinations(db),
    )


@post("/routes/{route_id:uuid}", include_in_schema=False, status_code=200)
async def update_route(
    request: Request[Any, Any, Any],
    route_id: FromPath[uuid.UUID],
    routing: NamedDependency[EventRouter],
) -> Redirect:
    db, form = _deps(request).db, _form(request)

    async def act() -> str:
        body = {
            "event_types": [
                t.strip() for t in (form.get("event_types") or "").split(",") if t.strip()
            ],
            "destination": form.get("destination") or None,
            "path": (form.get("path") or "").strip(),
            "body": form.get("body") or None,
            "enabled": form.get("enabled") == "on",
        }
        patch = _convert(body, RoutePatch)
        async with audited(db, request.state.console_key, "update_route", [str(route_id)]):
            await gateway.update_route(db, routing, route_id, patch)
        return "Route saved."

    here = f"/console/routes/{route_id}"
    return await attempt(request, here, here, act)


@post("/routes/{route_id:uuid}/delete", include_in_schema=False, status_code=200)
async def delete_route(request: Request[Any, Any, Any], route_id: FromPath[uuid.UUID]) -> Redirect:
    db = _deps(request).db

    async def act() -> str:
        async with audited(db, request.state.console_key, "delete_route", [str(route_id)]):
            await gateway.delete_route(db, route_id)
        return "Route deleted."

    return await attempt(request, "/console/destinations", "/console/destinations", act)


@get("/routes/test", include_in_schema=False)
async def route_test_page(request: Request[Any, Any, Any]) -> Response[str]:
    return render(request, "route_test.html", result=None, error=None, form={})


@post("/routes/test", include_in_schema=False, status_code=200)
async def route_test_run(
    request: Request[Any, Any, Any], routing: NamedDependency[EventRouter]
) -> Response[str]:
    form = _form(request)
    try:
        body: dict[str, Any] = {}
        if _blank(form.get("event_id")):
            body["event_id"] = form["event_id"].strip()
        else:
            try:
                body["payload"] = json.loads(form.get("payload") or "")
            except json.JSONDecodeError:
                raise BadRequest("payload: not JSON", code="invalid_event") from None
            body["provider"] = form.get("provider")
        result = await route_test.dry_run(_deps(request), routing, _convert(body, RouteTestIn))
    except MimicError as exc:
        return render(request, "route_test.html", result=None, error=exc.message, form=form)
    shown = json.dumps(msgspec.to_builtins(result), indent=2)
    return render(request, "route_test.html", result=result, shown=shown, error=None, form=form)


# --- email ------------------------------------------------------------------------------------


@get("/email", include_in_schema=False)
async def notifications(
    request: Request[Any, Any, Any],
    tenant_id: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    error, page = None, None
    try:
        page = await email_repository.list_notifications(
            _deps(request).reads,
            tenant_id=_blank(tenant_id),
            status=_blank(status),  # type: ignore[arg-type]
            to=_blank(to),
            limit=50,
            cursor=_blank(cursor),
        )
    except MimicError as exc:
        error = exc.message
    return render(request, "email.html", page=page, filters=request.query_params, error=error)


@get("/email/{notification_id:uuid}", include_in_schema=False)
async def notification(
    request: Request[Any, Any, Any], notification_id: FromPath[uuid.UUID]
) -> Response[str]:
    db = _deps(request).db
    found = await email_repository.get_notification(
        _deps(request).reads, notification_id, primary=db
    )
    html, text = await email_repository.get_body(db, notification_id)
    return render(request, "notification.html", n=found, html=html, text=text)


@get("/suppressions", include_in_schema=False)
async def suppressions(
    request: Request[Any, Any, Any],
    tenant_id: FromQuery[str | None] = None,
    email: FromQuery[str | None] = None,
) -> Response[str]:
    error, page = None, None
    try:
        page = await suppression.list_page(
            _deps(request).db, _blank(tenant_id), email_filter=_blank(email), limit=100, cursor=None
        )
    except MimicError as exc:
        error = exc.message
    return render(
        request, "suppressions.html", page=page, filters=request.query_params, error=error
    )


@post("/suppressions", include_in_schema=False, status_code=200)
async def add_suppression(request: Request[Any, Any, Any]) -> Redirect:
    db, form = _deps(request).db, _form(request)
    email, tenant = (form.get("email") or "").strip(), _blank(form.get("tenant_id"))

    async def act() -> str:
        async with audited(db, request.state.console_key, "add_suppression", [email]):
            await suppression.add_by_hand(db, tenant, email, _blank(form.get("detail")))
        return f"{email} suppressed."

    return await attempt(request, "/console/suppressions", "/console/suppressions", act)


@post("/suppressions/remove", include_in_schema=False, status_code=200)
async def remove_suppression(request: Request[Any, Any, Any]) -> Redirect:
    db, form = _deps(request).db, _form(request)
    email, tenant = (form.get("email") or "").strip(), _blank(form.get("tenant_id"))
    force = form.get("force") == "on"

    async def act() -> str:
        async with audited(db, request.state.console_key, "remove_suppression", [email]) as e:
            removed = await suppression.remove(db, tenant, email, force=force)
            e.detail = {"tenant_id": tenant, "reason": removed.reason, "force": force}
        return f"{email} removed from the list."

    return await attempt(request, "/console/suppressions", "/console/suppressions", act)


@get("/templates", include_in_schema=False)
async def templates_page(
    request: Request[Any, Any, Any], templates: NamedDependency[Templates]
) -> Response[str]:
    listed = [templates.describe(name) for name in templates.names()]
    return render(request, "templates.html", templates=listed, preview=None, error=None, form={})


@post("/templates", include_in_schema=False, status_code=200)
async def template_preview(
    request: Request[Any, Any, Any], templates: NamedDependency[Templates]
) -> Response[str]:
    form = _form(request)
    listed = [templates.describe(name) for name in templates.names()]
    try:
        data = json.loads(form.get("data") or "{}")
        if not isinstance(data, dict):
            raise BadRequest("sample data: a JSON object", code="invalid_data")
        preview = templates.render(form.get("name", ""), data, _blank(form.get("locale")))
    except json.JSONDecodeError:
        return render(
            request,
            "templates.html",
            templates=listed,
            preview=None,
            error="sample data: not JSON",
            form=form,
        )
    except MimicError as exc:
        return render(
            request, "templates.html", templates=listed, preview=None, error=exc.message, form=form
        )
    return render(
        request, "templates.html", templates=listed, preview=preview, error=None, form=form
    )


@get("/audit", include_in_schema=False)
async def audit_log(
    request: Request[Any, Any, Any],
    action: FromQuery[str | None] = None,
    key_id: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
) -> Response[str]:
    entries = await audit.list_entries(
        _deps(request).reads, action=_blank(action), key_id=_blank(key_id), limit=100, before=before
    )
    return render(request, "audit.html", entries=entries, filters=request.query_params)


HANDLERS = [
    login_page,
    login,
    logout,
    overview,
    events,
    event,
    replay_confirm,
    replay,
    deliveries,
    retry,
    bulk_retry,
    bulk_progress,
    destinations,
    create_destination,
    destination,
    update_destination,
    destination_action,
    create_route,
    route_page,
    update_route,
    delete_route,
    route_test_page,
    route_test_run,
    notifications,
    notification,
    suppressions,
    add_suppression,
    remove_suppression,
    templates_page,
    template_preview,
    audit_log,
]


def console_routes(settings: Settings) -> list[Any]:
    """The console's router (its session cookie, its guard) and its static files."""
    sessions = session.session_config(settings).middleware

    def console_sessions(app: Any) -> Any:
        # A function, not the config itself: Litestar deep-copies a router's options, and the
        # session backend holds a cipher that cannot be copied.
        return sessions(app)

    router = Router(
        path="/console",
        route_handlers=HANDLERS,
        middleware=[console_sessions],
        before_request=guard,
        include_in_schema=False,
    )
    statics = create_static_files_router(
        STATIC, directories=[HERE / "static"], include_in_schema=False, name="console-static"
    )
    return [router, statics]
