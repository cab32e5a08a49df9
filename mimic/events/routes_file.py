"""``MIMIC_ROUTES_FILE``: destinations and routes kept in git, as TOML.

Read and checked when the API starts (an error names the file, the line and the field), then
written to the tables in one transaction: what the file defines is created or updated and
marked ``config`` (read-only through the API: 409 ``managed_by_config``); what an earlier
version of the file defined and this one does not is removed (a destination that still has
routes or unfinished deliveries is handed to the API instead). A destination's state (paused)
is the operators', and survives a restart. Secrets never sit in the file: they are read from
the environment variables it names.

    [[destinations]]
    name = "crm"
    url = "http://crm.internal:9000"
    api_key = { header = "X-API-Key", value_env = "CRM_API_KEY" }
    signing_secret_env = "CRM_WEBHOOK_SECRET"        # whsec_...
    policy = { timeout_seconds = 5, rate_per_second = 50 }

    [[routes]]
    name = "bounces-to-crm"
    provider = "resend"
    event_types = ["email.bounced", "email.complained"]
    destination = "crm"
    path = "/hooks/email"
    body = "envelope"
    filter = [{ path = "data.tags.category", op = "eq", value = "billing" }]
"""

from __future__ import annotations

import base64
import json
import logging
import re
import tomllib
import uuid
from collections.abc import Mapping
from typing import Annotated

import msgspec

from mimic.core.audit import record
from mimic.core.crypto import Keyring
from mimic.core.db import Database, load_queries
from mimic.core.errors import MimicError
from mimic.core.settings import ConfigError
from mimic.events import gateway
from mimic.events.routes import Router
from mimic.events.schemas import (
    Condition,
    DestinationIn,
    HeaderName,
    HeaderValue,
    Policy,
    RouteIn,
)

logger = logging.getLogger(__name__)
queries = load_queries("mimic.events")

#: Routes from the file get ids derived from their names: stable across restarts.
NAMESPACE = uuid.UUID("6f1c2a7e-5d3b-4c1e-9a6f-2b8d7e4c1a90")
EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class FileApiKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    value_env: EnvName
    header: HeaderName = "X-API-Key"


class FileDestination(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    url: str
    headers: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)
    api_key: FileApiKey | None = None
    signing_secret_env: EnvName | None = None
    policy: Policy = msgspec.field(default_factory=Policy)


class FileRoute(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    provider: str
    event_types: list[str]
    destination: str
    filter: list[Condition] = msgspec.field(default_factory=list)
    path: str = ""
    body: str = "envelope"
    enabled: bool = True


class RoutesFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    destinations: list[FileDestination] = msgspec.field(default_factory=list)
    routes: list[FileRoute] = msgspec.field(default_factory=list)


class Loaded(msgspec.Struct, frozen=True):
    """The file, checked: what to write, with the secrets read from the environment."""

    destinations: list[tuple[DestinationIn, str | None]]
    routes: list[RouteIn]


def route_id(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"route:{name}")


class _Lines:
    """Where a table of an array of tables (``[[routes]]`` number i) and its keys are."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, table: str, index: int, key: str | None) -> int:
        header = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]")
        seen, start = -1, 0
        for n, line in enumerate(self.lines):
            if header.match(line):
                seen += 1
                if seen == index:
                    start = n
                    break
        else:
            return 1
        if key is not None:
            pattern = re.compile(rf"^\s*{re.escape(key)}\s*[=.]")
            for n in range(start + 1, len(self.lines)):
                if self.lines[n].lstrip().startswith("[["):
                    break
                if pattern.match(self.lines[n]):
                    return n + 1
        return start + 1


_PATH = re.compile(r"\$\.(destinations|routes)\[(\d+)\](?:\.([a-z_]+))?(.*)")


def load(path: str, router: Router, environ: Mapping[str, str]) -> Loaded:
    """Read and check the file; ConfigError names the file, line and field at fault."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"MIMIC_ROUTES_FILE: cannot read {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    lines = _Lines(text)

    def fail(table: str, index: int, field: str | None, message: str) -> ConfigError:
        line = lines.find(table, index, field)
        where = f"{table}[{index}]" + (f".{field}" if field else "")
        return ConfigError(f"{path}:{line}: {where}: {message}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(data, RoutesFile)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _PATH.search(message)
        if found is None:
            raise ConfigError(f"{path}: {message}") from None
        table, index, field, rest = found.groups()
        detail = message.split(" - at `")[0]
        unknown = re.search(r"unknown field `([A-Za-z0-9_-]+)`", detail)
        if field is None and unknown is not None:
            field = unknown.group(1)
        raise fail(table, int(index), field, f"{detail}{rest.rstrip('`')}") from None

    destinations: list[tuple[DestinationIn, str | None]] = []
    names: set[str] = set()
    for i, d in enumerate(parsed.destinations):
        if d.name in names:
            raise fail("destinations", i, "name", f"{d.name!r} is defined twice")
        if d.name == gateway.INKPASS:
            raise fail(
                "destinations",
                i,
                "name",
                "inkpass is defined by INKPASS_INTERNAL_URL and MIMIC_SERVICE_API_KEY",
            )
        names.add(d.name)
        api_key = None
        if d.api_key is not None:
            value = environ.get(d.api_key.value_env, "")
            if len(value) < 8:
                raise fail(
                    "destinations",
                    i,
                    "api_key",
                    f"{d.api_key.value_env} is unset or shorter than 8 characters",
                )
            api_key = {"header": d.api_key.header, "value": value}
        secret = None
        if d.signing_secret_env is not None:
            secret = environ.get(d.signing_secret_env, "")
            if not _is_whsec(secret):
                raise fail(
                    "destinations",
                    i,
                    "signing_secret_env",
                    f"{d.signing_secret_env} is unset or not a whsec_<base64> secret",
                )
        try:
            destination = msgspec.convert(
                {
                    "name": d.name,
                    "url": gateway.check_url(d.url),
                    "headers": d.headers,
                    "api_key": api_key,
                    "policy": msgspec.to_builtins(d.policy),
                },
                DestinationIn,
            )
        except msgspec.ValidationError as exc:
            field = _field(str(exc))
            raise fail("destinations", i, field, str(exc).split(" - at ")[0]) from None
        except MimicError as exc:
            raise fail("destinations", i, _field(exc.message), exc.message) from None
        destinations.append((destination, secret))

    routes: list[RouteIn] = []
    route_names: set[str] = set()
    known_destinations = names | {gateway.INKPASS}
    for i, r in enumerate(parsed.routes):
        if r.name in route_names:
            raise fail("routes", i, "name", f"{r.name!r} is defined twice")
        route_names.add(r.name)
        if r.destination not in known_destinations:
            raise fail(
                "routes",
                i,
                "destination",
                f"{r.destination!r} is not a destination of this file (or inkpass)",
            )
        try:
            route = msgspec.convert(msgspec.to_builtins(r), RouteIn)
            route = gateway.checked_route(router, route)
        except msgspec.ValidationError as exc:
            raise fail("routes", i, _field(str(exc)), str(exc).split(" - at ")[0]) from None
        except MimicError as exc:
            raise fail("routes", i, _field(exc.message), exc.message) from None
        routes.append(route)
    return Loaded(destinations=destinations, routes=routes)


def _field(message: str) -> str | None:
    found = re.search(r"\$\.([a-z_]+)", message) or re.match(r"([a-z_]+)[\[.:]", message)
    return found.group(1) if found else None


def _is_whsec(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret[6:], validate=True)) >= 16
    except ValueError:
        return False


async def sync(db: Database, keyring: Keyring, path: str, loaded: Loaded) -> dict[str, int]:
    """Write what the file defines; remove what it no longer does. One transaction."""
    async with db.transaction() as conn:
        await conn.execute(queries["lock_gateway"])  # one sync at a time
        for destination, secret in loaded.destinations:
            await gateway.put_config_destination(conn, keyring, destination, secret)
        kept = []
        for route in loaded.routes:
            assert route.name is not None
            rid = route_id(route.name)
            kept.append(rid)
            await gateway.put_config_route(conn, rid, route)
        removed_routes = await conn.fetch(queries["delete_config_routes"], kept)
        released = await conn.fetch(
            queries["release_config_destinations"], [d.name for d, _ in loaded.destinations]
        )
    counts = {
        "destinations": len(loaded.destinations),
        "routes": len(loaded.routes),
        "routes_removed": len(removed_routes),
        "destinations_released": len(released),
    }
    await record(
        db,
        key_id="routes-file",
        action="sync_routes_file",
        targets=[path],
        outcome="ok",
        detail=counts,
    )
    logger.info("routes file %s: %s", path, json.dumps(counts))
    return counts
