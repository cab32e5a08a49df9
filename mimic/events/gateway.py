"""Destinations and routes: the gateway's configuration, as data.

The only module that writes ``gateway_destinations``, ``gateway_routes`` and (through their
triggers) ``gateway_version``. The admin API, the CLI (over the API) and the routes file
(``routes_file``) all change them through the functions here.

Secrets (a destination's API key value, its signing secrets) are sealed with the keyring, with
the destination's name as associated data, and never leave in an answer: only the key's last
4 characters, and a new signing secret once, in the answer that made it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import os
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from mimic.core.crypto import Keyring, Sealed
from mimic.core.db import Connection, Database, load_queries
from mimic.core.errors import BadRequest, Conflict, MimicError, NotFound
from mimic.core.settings import Settings
from mimic.events import repository
from mimic.events.routes import (
    Router,
    RouteSet,
    StoredRoute,
    check_filter,
    check_patterns,
    known_for,
    task_for,
)
from mimic.events.schemas import (
    ApiKeyOut,
    Condition,
    DestinationIn,
    DestinationOut,
    DestinationPatch,
    DestinationState,
    ManagedBy,
    Policy,
    RotateIn,
    RouteIn,
    RouteOut,
    RoutePatch,
    SigningSecretOut,
)

logger = logging.getLogger(__name__)

queries = load_queries("mimic.events")

#: The destination defined by settings (INKPASS_INTERNAL_URL, MIMIC_SERVICE_API_KEY).
INKPASS = "inkpass"
#: Resumed deliveries are queued again in batches of this many (one transaction each).
RESUME_BATCH = 1000


# --- reading the configuration (the router's and the worker's caches) --------------------------


async def current_version(db: Database | Connection) -> int:
    version: int = await db.fetchval(queries["gateway_version"])
    return version


async def load_routes(db: Database | Connection) -> RouteSet:
    row = await db.fetchrow(queries["load_routes"])
    assert row is not None
    routes = msgspec.json.decode(row["routes"], type=tuple[StoredRoute, ...])
    return RouteSet(version=row["version"], routes=routes)


async def route_set(db: Database, router: Router, *, refresh: bool = False) -> RouteSet:
    """The router's stored routes, read on first use (or when ``refresh``)."""
    if router.stored is None or refresh:
        router.stored = await load_routes(db)
    return router.stored


class SigningSecret(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    nonce: str
    ciphertext: str
    created_at: datetime.datetime
    expires_at: datetime.datetime | None = None


class _StoredDestination(msgspec.Struct, kw_only=True):
    name: str
    url: str
    headers: dict[str, str]
    api_key_header: str | None
    api_key_key_id: str | None
    api_key_nonce: str | None
    api_key_ciphertext: str | None
    signing_secrets: list[SigningSecret]
    timeout_seconds: float
    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    rate_per_second: float | None
    circuit_failures: int
    circuit_window_seconds: float
    circuit_cooldown_seconds: float
    state: DestinationState
    managed_by: ManagedBy


class Destination(msgspec.Struct, frozen=True, kw_only=True):
    """A destination as the worker delivers to it (secrets opened; kept in memory only)."""

    name: str
    url: str
    headers: dict[str, str]
    api_key_header: str | None
    api_key: str | None
    #: (secret, expires_at) pairs; a delivery is signed with each one not expired.
    signing_secrets: tuple[tuple[str, datetime.datetime | None], ...]
    policy: Policy
    state: DestinationState


def _aad(name: str, what: str) -> bytes:
    return f"gateway-destination:{name}:{what}".encode()


def _open(keyring: Keyring, name: str, what: str, key_id: str, nonce: str, cipher: str) -> str:
    sealed = Sealed(key_id, base64.b64decode(nonce), base64.b64decode(cipher))
    return keyring.open(sealed, _aad(name, what)).decode()


def _policy(values: Mapping[str, Any]) -> Policy:
    """A destination's policy from its row's columns (named as the policy's fields)."""
    return Policy(**{field: values[field] for field in Policy.__struct_fields__})


def settings_destination(settings: Settings, state: DestinationState) -> Destination:
    """inkpass, as INKPASS_INTERNAL_URL, MIMIC_SERVICE_API_KEY and DELIVERY_* define it."""
    key = settings.inkpass.service_api_key
    retry = settings.delivery
    return Destination(
        name=INKPASS,
        url=settings.inkpass.url,
        headers={},
        api_key_header="X-API-Key" if key is not None else None,
        api_key=key.get() if key is not None else None,
        signing_secrets=(),
        policy=Policy(
            timeout_seconds=settings.inkpass.timeout_seconds,
            max_attempts=retry.max_attempts,
            backoff_base_seconds=retry.backoff_base_seconds,
            backoff_max_seconds=retry.backoff_max_seconds,
        ),
        state=state,
    )


class Destinations:
    """The worker's copy of every destination, read again when the version moves."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self._settings, self._keyring = settings, keyring
        self.version = -1
        self._by_name: dict[str, Destination] = {}
        self._reading = asyncio.Lock()

    async def get(self, db: Database, name: str, version: int) -> Destination | None:
        """The destination as of ``version`` or later (None: it no longer exists)."""
        if version > self.version:
            async with self._reading:  # one read for every attempt that finds it stale
                if version > self.version:
                    await self.reload(db)
        return self._by_name.get(name)

    async def reload(self, db: Database) -> None:
        row = await db.fetchrow(queries["load_destinations"])
        assert row is not None
        stored = msgspec.json.decode(row["destinations"], type=list[_StoredDestination])
        self._by_name = {d.name: self._opened(d) for d in stored}
        self.version = row["version"]

    def _opened(self, d: _StoredDestination) -> Destination:
        if d.managed_by == "settings":
            return settings_destination(self._settings, d.state)
        api_key = None
        if d.api_key_key_id and d.api_key_nonce and d.api_key_ciphertext:
            api_key = _open(
                self._keyring,
                d.name,
                "api_key",
                d.api_key_key_id,
                d.api_key_nonce,
                d.api_key_ciphertext,
            )
        secrets = tuple(
            (_open(self._keyring, d.name, "signing", s.key_id, s.nonce, s.ciphertext), s.expires_at)
            for s in d.signing_secrets
        )
        return Destination(
            name=d.name,
            url=d.url,
            headers=d.headers,
            api_key_header=d.api_key_header,
            api_key=api_key,
            signing_secrets=secrets,
            policy=_policy(msgspec.structs.asdict(d)),
            state=d.state,
        )


# --- destinations: the admin API's operations -------------------------------------------------


def check_url(url: str, field: str = "url") -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"{field}: {url!r} is not an http:// or https:// URL with a host", code="invalid_url"
        )
    if parts.query or parts.fragment:
        raise BadRequest(
            f"{field}: a destination's URL takes no query or fragment (a route's path is "
            "appended to it)",
            code="invalid_url",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadRequest(f"{field}: {url!r} has an invalid port", code="invalid_url") from None
    return url.rstrip("/")


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    reserved = {"content-type", "content-length", "host", "idempotency-key", "user-agent"}
    for name in headers:
        lower = name.lower()
        if lower in reserved or lower.startswith(("webhook-", "x-mimic-")):
            raise BadRequest(
                f"headers.{name}: set by Mimic on every delivery; it cannot be overridden",
                code="invalid_headers",
            )
    return headers


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _seal_secret(keyring: Keyring, name: str, secret: str, expires: Any = None) -> dict[str, Any]:
    sealed = keyring.seal(secret.encode(), _aad(name, "signing"))
    return {
        "id": f"sec_{uuid.uuid4().hex[:12]}",
        "key_id": sealed.key_id,
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "expires_at": expires.isoformat() if expires is not None else None,
    }


class _Row(msgspec.Struct, kw_only=True):
    """A destination row as the API changes it (whole, then written back)."""

    name: str
    url: str
    headers: dict[str, str]
    api_key_header: str | None = None
    api_key_key_id: str | None = None
    api_key_nonce: bytes | None = None
    api_key_ciphertext: bytes | None = None
    api_key_last4: str | None = None
    signing_secrets: list[dict[str, Any]] = msgspec.field(default_factory=list)
    policy: Policy = msgspec.field(default_factory=Policy)
    state: DestinationState = "active"
    managed_by: ManagedBy = "api"


def _row_of(record: Any) -> _Row:
    r = dict(record)
    return _Row(
        name=r["name"],
        url=r["url"],
        headers=json.loads(r["headers"]) if isinstance(r["headers"], str) else r["headers"],
        api_key_header=r["api_key_header"],
        api_key_key_id=r["api_key_key_id"],
        api_key_nonce=r["api_key_nonce"],
        api_key_ciphertext=r["api_key_ciphertext"],
        api_key_last4=r["api_key_last4"],
        signing_secrets=(
            json.loads(r["signing_secrets"])
            if isinstance(r["signing_secrets"], str)
            else r["signing_secrets"]
        ),
        policy=_policy(r),
        state=r["state"],
        managed_by=r["managed_by"],
    )


def _out(record: Any, *, secret: str | None = None) -> DestinationOut:
    row = _row_of(record)
    now = datetime.datetime.now(datetime.UTC)
    secrets = [
        SigningSecretOut(
            id=s["id"],
            created_at=datetime.datetime.fromisoformat(s["created_at"]),
            expires_at=datetime.datetime.fromisoformat(s["expires_at"])
            if s["expires_at"]
            else None,
        )
        for s in row.signing_secrets
        if not s["expires_at"] or datetime.datetime.fromisoformat(s["expires_at"]) > now
    ]
    return DestinationOut(
        name=row.name,
        url=row.url,
        headers=row.headers,
        api_key=(
            ApiKeyOut(header=row.api_key_header, last4=row.api_key_last4 or "")
            if row.api_key_header
            else None
        ),
        signing_secrets=secrets,
        policy=row.policy,
        state=row.state,
        managed_by=row.managed_by,
        unfinished_deliveries=int(dict(record).get("unfinished_deliveries") or 0),
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        signing_secret=secret,
    )


async def _write(conn: Connection, row: _Row, *, replace: bool) -> bool:
    p = row.policy
    found = await conn.fetchval(
        queries["upsert_destination"],
        row.name,
        row.url,
        json.dumps(row.headers),
        row.api_key_header,
        row.api_key_key_id,
        row.api_key_nonce,
        row.api_key_ciphertext,
        row.api_key_last4,
        json.dumps(row.signing_secrets),
        p.timeout_seconds,
        p.max_attempts,
        p.backoff_base_seconds,
        p.backoff_max_seconds,
        p.rate_per_second,
        p.circuit_failures,
        p.circuit_window_seconds,
        p.circuit_cooldown_seconds,
        row.state,
        row.managed_by,
        replace,
    )
    return found is not None


def _set_api_key(row: _Row, keyring: Keyring, header: str, value: str) -> None:
    sealed = keyring.seal(value.encode(), _aad(row.name, "api_key"))
    row.api_key_header = header
    row.api_key_key_id, row.api_key_nonce = sealed.key_id, sealed.nonce
    row.api_key_ciphertext, row.api_key_last4 = sealed.ciphertext, value[-4:]


def _clear_api_key(row: _Row) -> None:
    row.api_key_header = row.api_key_key_id = row.api_key_last4 = None
    row.api_key_nonce = row.api_key_ciphertext = None


def _check_policy(policy: Policy) -> Policy:
    if policy.backoff_base_seconds > policy.backoff_max_seconds:
        raise BadRequest(
            "policy.backoff_base_seconds: larger than policy.backoff_max_seconds",
            code="invalid_policy",
        )
    return policy


async def list_destinations(db: Database) -> list[DestinationOut]:
    return [_out(r) for r in await db.fetch(queries["list_destinations"], None)]


async def get_destination(db: Database | Connection, name: str) -> DestinationOut:
    rows = await db.fetch(queries["list_destinations"], name)
    if not rows:
        raise NotFound(f"no destination {name!r}")
    return _out(rows[0])


async def create_destination(
    db: Database, keyring: Keyring, data: DestinationIn, *, managed_by: ManagedBy = "api"
) -> DestinationOut:
    row = _Row(
        name=data.name,
        url=check_url(data.url),
        headers=_check_headers(data.headers),
        policy=_check_policy(data.policy),
        managed_by=managed_by,
    )
    if data.api_key is not None:
        _set_api_key(row, keyring, data.api_key.header, data.api_key.value)
    secret = _new_secret() if data.signing else None
    if secret is not None:
        row.signing_secrets = [_seal_secret(keyring, row.name, secret)]
    async with db.transaction() as conn:
        if not await _write(conn, row, replace=False):
            raise Conflict(f"a destination named {data.name!r} exists", code="destination_exists")
        created = await get_destination(conn, data.name)
    return msgspec.structs.replace(created, signing_secret=secret)


def _refuse_managed(row: _Row, what: str) -> None:
    if row.managed_by == "config":
        raise Conflict(
            f"destination {row.name!r} is defined by MIMIC_ROUTES_FILE; {what} it there",
            code="managed_by_config",
        )
    if row.managed_by == "settings":
        raise Conflict(
            f"destination {row.name!r} is defined by INKPASS_INTERNAL_URL and "
            f"MIMIC_SERVICE_API_KEY; {what} those settings",
            code="managed_by_config",
        )


async def _locked(conn: Connection, name: str) -> _Row:
    record = await conn.fetchrow(queries["lock_destination"], name)
    if record is None:
        raise NotFound(f"no destination {name!r}")
    return _row_of(record)


async def update_destination(
    db: Database, keyring: Keyring, name: str, patch: DestinationPatch
) -> DestinationOut:
    secret = None
    async with db.transaction() as conn:
        row = await _locked(conn, name)
        _refuse_managed(row, "change")
        if patch.url is not None:
            row.url = check_url(patch.url)
        if patch.headers is not None:
            row.headers = _check_headers(patch.headers)
        if patch.api_key is None:
            _clear_api_key(row)
        elif not isinstance(patch.api_key, msgspec.UnsetType):
            _set_api_key(row, keyring, patch.api_key.header, patch.api_key.value)
        if patch.signing is False:
            row.signing_secrets = []
        elif patch.signing and not row.signing_secrets:
            secret = _new_secret()
            row.signing_secrets = [_seal_secret(keyring, name, secret)]
        if patch.policy is not None:
            changes = {
                f: getattr(patch.policy, f)
                for f in patch.policy.__struct_fields__
                if getattr(patch.policy, f) is not None
                and not isinstance(getattr(patch.policy, f), msgspec.UnsetType)
            }
            if patch.policy.rate_per_second is None:
                changes["rate_per_second"] = None
            row.policy = _check_policy(msgspec.structs.replace(row.policy, **changes))
        await _write(conn, row, replace=True)
        updated = await get_destination(conn, name)
    return msgspec.structs.replace(updated, signing_secret=secret)


async def rotate_secret(
    db: Database, keyring: Keyring, name: str, data: RotateIn
) -> DestinationOut:
    """A new current secret; the previous one signs too for ``previous_valid_seconds``."""
    secret = _new_secret()
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(seconds=data.previous_valid_seconds)
    async with db.transaction() as conn:
        row = await _locked(conn, name)
        _refuse_managed(row, "rotate")
        kept = []
        for s in row.signing_secrets:
            expires = datetime.datetime.fromisoformat(s["expires_at"]) if s["expires_at"] else None
            if expires is None:  # the current one: valid a while longer
                if data.previous_valid_seconds:
                    kept.append({**s, "expires_at": until.isoformat()})
            elif expires > now:
                kept.append({**s, "expires_at": min(expires, until).isoformat()})
        row.signing_secrets = [_seal_secret(keyring, name, secret), *kept]
        await _write(conn, row, replace=True)
        rotated = await get_destination(conn, name)
    return msgspec.structs.replace(rotated, signing_secret=secret)


async def set_state(db: Database, name: str, state: DestinationState) -> DestinationOut:
    """Pause, disable or resume a destination. Resuming queues its waiting deliveries again,
    oldest first (after the new state has committed: a delivery parked meanwhile is seen)."""
    previous = await db.fetchval(queries["set_destination_state"], name, state)
    if previous is None:
        raise NotFound(f"no destination {name!r}")
    if state == "active":
        resumed = await requeue_paused(db, name)
        if resumed:
            logger.info("destination %s resumed: %d delivery(ies) queued again", name, resumed)
    return await get_destination(db, name)


async def requeue_paused(db: Database, name: str) -> int:
    """Queue the destination's paused deliveries again, oldest first, in batches."""
    total = 0
    while True:
        async with db.transaction() as conn:
            rows = await repository.lock_paused(conn, name, RESUME_BATCH)
            if rows:
                job_ids = await repository.defer_deliveries(
                    conn, [(r.id, r.task_name) for r in rows]
                )
                await repository.unpause(conn, [r.id for r in rows], job_ids)
        total += len(rows)
        if len(rows) < RESUME_BATCH:
            return total


class Deleted(msgspec.Struct, kw_only=True):
    name: str
    routes_deleted: int
    #: Deliveries still waiting that were failed with ``destination_deleted`` (force).
    deliveries_failed: int


async def delete_destination(db: Database, name: str, *, force: bool) -> Deleted:
    async with db.transaction() as conn:
        row = await _locked(conn, name)
        _refuse_managed(row, "remove")
        routes = await conn.fetchval(queries["count_routes_to"], name)
        unfinished = await repository.count_unfinished(conn, name)
        if not force and (routes or unfinished):
            raise Conflict(
                f"destination {name!r} has {routes} route(s) and {unfinished} unfinished "
                "delivery(ies); delete with ?force=true to delete its routes and fail those "
                "deliveries with destination_deleted",
                code="destination_in_use",
            )
        failed = await repository.fail_unfinished(conn, name, "destination_deleted")
        deleted = await conn.fetchval(queries["delete_destination"], name)
    return Deleted(name=name, routes_deleted=int(deleted or 0), deliveries_failed=failed)


async def put_config_destination(
    conn: Connection, keyring: Keyring, data: DestinationIn, secret: str | None
) -> None:
    """Write a destination the routes file defines (its state, an operator's, is kept)."""
    record = await conn.fetchrow(queries["lock_destination"], data.name)
    row = _Row(
        name=data.name,
        url=data.url,
        headers=_check_headers(data.headers),
        policy=_check_policy(data.policy),
        state=record["state"] if record is not None else "active",
        managed_by="config",
    )
    if data.api_key is not None:
        _set_api_key(row, keyring, data.api_key.header, data.api_key.value)
    if secret is not None:
        row.signing_secrets = [_seal_secret(keyring, data.name, secret)]
    await _write(conn, row, replace=True)


async def put_config_route(conn: Connection, route_id: uuid.UUID, data: RouteIn) -> None:
    """Write a route the routes file defines (checked by the file's loader)."""
    await _write_route(conn, route_id, data, "config")


async def rotate_secrets(db: Database, keyring: Keyring) -> int:
    """Re-seal every destination's API key and signing secrets under the current encryption
    key (`mimic rotate-keys`); returns how many destinations changed."""
    current = keyring.current_key_id
    changed = 0
    async with db.transaction() as conn:
        for record in await conn.fetch(queries["destinations_to_rotate"], current):
            row = _row_of(record)
            if row.api_key_key_id and row.api_key_nonce and row.api_key_ciphertext:
                sealed = Sealed(row.api_key_key_id, row.api_key_nonce, row.api_key_ciphertext)
                value = keyring.open(sealed, _aad(row.name, "api_key")).decode()
                assert row.api_key_header is not None
                _set_api_key(row, keyring, row.api_key_header, value)
            resealed = []
            for s in row.signing_secrets:
                secret = _open(
                    keyring, row.name, "signing", s["key_id"], s["nonce"], s["ciphertext"]
                )
                fresh = _seal_secret(keyring, row.name, secret)
                resealed.append({**s, **{k: fresh[k] for k in ("key_id", "nonce", "ciphertext")}})
            row.signing_secrets = resealed
            await _write(conn, row, replace=True)
            changed += 1
    return changed


async def sync_settings_destination(db: Database, settings: Settings) -> None:
    """Show the URL this process delivers to inkpass at (its settings define it). Best
    effort: only what the API shows depends on it, and an API must start (and say on /readyz
    what is wrong) with its database away or not migrated yet."""
    try:
        await db.execute(queries["set_settings_destination"], INKPASS, settings.inkpass.url)
    except MimicError as exc:
        logger.warning("could not record inkpass's URL (%s); /readyz says why", exc.code)


# --- routes -------------------------------------------------------------------------------------


def _route_out(record: Any) -> RouteOut:
    r = dict(record)
    r["filter"] = msgspec.json.decode(r["filter"], type=list[Condition])
    return msgspec.convert(r, RouteOut)


async def list_routes(
    db: Database | Connection,
    *,
    destination: str | None = None,
    provider: str | None = None,
) -> list[RouteOut]:
    rows = await db.fetch(queries["list_routes"], None, destination, provider)
    return [_route_out(r) for r in rows]


async def get_route(db: Database | Connection, route_id: uuid.UUID) -> RouteOut:
    rows = await db.fetch(queries["list_routes"], route_id, None, None)
    if not rows:
        raise NotFound(f"no route {route_id}")
    return _route_out(rows[0])


def checked_route(router: Router, data: RouteIn) -> RouteIn:
    """A route's fields checked (the destination's existence is checked by the write)."""
    known = known_for(router, data.provider)
    return msgspec.structs.replace(
        data,
        event_types=check_patterns(data.provider, data.event_types, known),
        filter=check_filter(data.filter),
    )


async def _write_route(
    conn: Connection, route_id: uuid.UUID, data: RouteIn, managed_by: ManagedBy
) -> None:
    exists = await conn.fetchval(queries["destination_exists"], data.destination)
    if not exists:
        raise BadRequest(
            f"destination: no destination {data.destination!r} (create it first)",
            code="unknown_destination",
        )
    await conn.execute(
        queries["upsert_route"],
        route_id,
        data.name,
        data.provider,
        data.event_types,
        msgspec.json.encode(data.filter).decode(),
        data.destination,
        data.path,
        data.body,
        task_for(data.body, data.path),
        data.enabled,
        managed_by,
    )


async def create_route(
    db: Database,
    router: Router,
    data: RouteIn,
    *,
    managed_by: ManagedBy = "api",
    route_id: uuid.UUID | None = None,
) -> RouteOut:
    data = checked_route(router, data)
    new_id = route_id or uuid.uuid4()
    async with db.transaction() as conn:
        try:
            await _write_route(conn, new_id, data, managed_by)
        except Conflict:
            raise Conflict(f"a route named {data.name!r} exists", code="route_exists") from None
        return await get_route(conn, new_id)


def _refuse_config(route: RouteOut) -> None:
    if route.managed_by == "config":
        raise Conflict(
            f"route {route.name or route.id} is defined by MIMIC_ROUTES_FILE; change it there",
            code="managed_by_config",
        )


async def update_route(
    db: Database, router: Router, route_id: uuid.UUID, patch: RoutePatch
) -> RouteOut:
    async with db.transaction() as conn:
        record = await conn.fetchrow(queries["lock_route"], route_id)
        if record is None:
            raise NotFound(f"no route {route_id}")
        current = _route_out(record)
        _refuse_config(current)
        changes = {
            f: getattr(patch, f)
            for f in patch.__struct_fields__
            if getattr(patch, f) is not None
            and not isinstance(getattr(patch, f), msgspec.UnsetType)
        }
        if patch.name is None:
            changes["name"] = None
        data = checked_route(
            router,
            RouteIn(
                provider=current.provider,
                event_types=changes.get("event_types", current.event_types),
                destination=changes.get("destination", current.destination),
                name=changes.get("name", current.name),
                filter=changes.get("filter", current.filter),
                path=changes.get("path", current.path),
                body=changes.get("body", current.body),
                enabled=changes.get("enabled", current.enabled),
            ),
        )
        try:
            await _write_route(conn, route_id, data, current.managed_by)
        except Conflict:
            raise Conflict(f"a route named {data.name!r} exists", code="route_exists") from None
        return await get_route(conn, route_id)


async def delete_route(db: Database, route_id: uuid.UUID) -> RouteOut:
    async with db.transaction() as conn:
        record = await conn.fetchrow(queries["lock_route"], route_id)
        if record is None:
            raise NotFound(f"no route {route_id}")
        current = _route_out(record)
        _refuse_config(current)
        await conn.execute(queries["delete_route"], route_id)
    return current


async def route_names(db: Database, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    if not ids:
        return {}
    return {r["id"]: r["name"] for r in await db.fetch(queries["route_names"], list(ids))}
