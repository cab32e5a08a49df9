"""The ``mimic`` command: api, worker, migrate, run (dev: both on the embedded database)."""

from __future__ import annotations

import argparse
import asyncio
import cmd
import json
import logging
import os
import pathlib
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

from mimic.core.embedded import resolve_local
from mimic.core.errors import DatabaseUnavailable, MimicError
from mimic.core.logs import configure_logging
from mimic.core.migrate import load_steps, migrate
from mimic.core.settings import ConfigError, Settings
from mimic.supervise import Child, announce_when_ready, port_free, supervise

logger = logging.getLogger("mimic")


def _stop_waiting(signum: int, _frame: object) -> None:
    raise SystemExit(0)  # SIGTERM while waiting for the database: a clean stop


def _migrate_when_reachable(settings: Settings) -> None:
    """Apply migrations, waiting (with backoff) for a database that is not there yet."""
    dsn = settings.database.session_url
    assert dsn is not None
    delay, waiting = 0.5, False
    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        while True:
            try:
                asyncio.run(migrate(dsn.get(), load_steps()))
            except DatabaseUnavailable as exc:
                if not waiting:
                    cause = type(exc.__cause__).__name__ if exc.__cause__ else "unavailable"
                    logger.error("database unavailable at startup (%s); waiting for it", cause)
                    waiting = True
                time.sleep(delay)
                delay = min(delay * 2, settings.worker.reconnect_max_seconds)
                continue
            if waiting:
                logger.warning("database answered; starting")
            return
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare(*, run_migrations: bool = True, wait: bool = True) -> Settings:
    """Settings, logging and the schema. Long-running commands (api, worker, run) wait for
    a database that is not up yet; one-shot commands fail at once."""
    settings = resolve_local(Settings.from_env(os.environ))
    configure_logging(settings)
    if run_migrations and wait:
        _migrate_when_reachable(settings)
    elif run_migrations:
        direct = settings.database.session_url
        assert direct is not None
        asyncio.run(migrate(direct.get(), load_steps()))
    return settings


def cmd_migrate(_: argparse.Namespace) -> int:
    _prepare(wait=False)
    print("mimic: schema is current")
    return 0


def cmd_api(_: argparse.Namespace) -> int:
    import uvicorn

    from mimic.app import create_app

    settings = _prepare()
    if not port_free(settings.server.port, settings.server.host):
        print(_busy(settings), file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,  # Mimic's own access log carries the request id (mimic.access)
        timeout_graceful_shutdown=10,
        loop="uvloop",
        http="httptools",
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from mimic.worker import run_worker

    settings = _prepare()
    if args.processes == 1:
        asyncio.run(run_worker(settings))
        return 0
    # N worker processes sharing the queue (SKIP LOCKED); a child that dies is restarted.
    base_port = settings.worker.health_port
    children = [
        Child(
            ["worker"],
            {"WORKER_HEALTH_PORT": str(base_port + i if base_port else 0)},
        )
        for i in range(args.processes)
    ]
    print(f"mimic: {args.processes} worker processes", flush=True)
    return supervise(children, restart=True)


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    """Re-encrypt every BYOK credential and every destination's API key and signing secrets
    under the first key of MIMIC_ENCRYPTION_KEYS."""
    from mimic.core.deps import open_deps
    from mimic.email.credentials import rotate_credentials
    from mimic.events.gateway import rotate_secrets

    settings = _prepare(wait=False)

    async def rotate() -> tuple[int, int]:
        async with open_deps(settings) as deps:
            credentials = await rotate_credentials(deps.db, deps.keyring)
            return credentials, await rotate_secrets(deps.db, deps.keyring)

    credentials, destinations = asyncio.run(rotate())
    key_id = settings.email.encryption_keys[0].key_id
    print(f"mimic: re-encrypted {credentials} credential(s) with key {key_id!r}")
    print(f"mimic: re-encrypted the secrets of {destinations} destination(s) with key {key_id!r}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Tenant API keys: create (shown once), list, revoke. Runs against the database."""
    from mimic.core.deps import open_deps
    from mimic.core.keys import create_key, list_keys, revoke_key

    settings = _prepare(wait=False)
    by = "cli:" + (os.environ.get("USER") or "unknown")

    async def run() -> int:
        async with open_deps(settings) as deps:
            if args.action == "create":
                kid, key = await create_key(deps.db, args.tenant, args.name, by=by)
                print(f"id:     {kid}\ntenant: {args.tenant}\nkey:    {key}")
                print("mimic: store the key now; it is not shown again", file=sys.stderr)
            elif args.action == "list":
                keys = await list_keys(deps.db, args.tenant)
                for k in keys:
                    state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
                    print(
                        f"{k.id}\t{k.tenant_id}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}\t{k.name}"
                    )
                if not keys:
                    print("mimic: no tenant keys", file=sys.stderr)
            else:
                await revoke_key(deps.db, args.id, by=by)
                print(f"mimic: revoked {args.id}")
        return 0

    return asyncio.run(run())


def cmd_run(_: argparse.Namespace) -> int:
    """Dev: one embedded Postgres, the API and a worker as two child processes."""
    settings = _prepare()
    assert settings.database.url is not None
    if not port_free(settings.server.port, settings.server.host):
        print(_busy(settings), file=sys.stderr)
        return 2
    env = {"DATABASE_URL": settings.database.url.get()}
    children = [Child(["api"], env), Child(["worker"], env)]
    standin = ""
    if settings.is_dev and not os.environ.get("INKPASS_INTERNAL_URL"):
        port = urllib.parse.urlsplit(settings.inkpass.url).port or 80
        if port_free(port):
            children.append(Child(["inkpass-standin", "--port", str(port)], env))
            standin = f", an inkpass stand-in on :{port}"
        else:
            standin = f" (port {port} is taken: using whatever inkpass answers there)"
    url = f"http://{settings.server.host}:{settings.server.port}"
    banner = f"mimic: API on {url} (docs at /docs), worker running{standin}; Ctrl-C stops all"
    threading.Thread(
        target=announce_when_ready, args=(f"{url}/readyz", banner), daemon=True
    ).start()
    # If any child exits, stop the others; the embedded Postgres stops with us.
    return supervise(children, restart=False)


def _busy(settings: Settings) -> str:
    return (
        f"mimic: port {settings.server.port} on {settings.server.host} is in use (another "
        "`make run`?); stop it, or set MIMIC_PORT to a free port"
    )


def cmd_inkpass_standin(args: argparse.Namespace) -> int:
    """Dev: answer 200 to inkpass calls and log them (what `mimic run` starts)."""
    import uvicorn

    from mimic.billing.standin import standin_app

    settings = resolve_local(Settings.from_env(os.environ))
    configure_logging(settings)
    if not settings.is_dev:
        print("mimic: the inkpass stand-in is for MIMIC_ENV=dev only", file=sys.stderr)
        return 2
    uvicorn.run(standin_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    return 0


def _api(method: str, path: str, **kwargs: Any) -> int:
    """Call Mimic's own admin API (MIMIC_URL, MIMIC_API_KEY) and print the JSON answer."""
    import httpx

    settings = Settings.from_env(os.environ)
    base = os.environ.get(
        "MIMIC_URL", f"http://{settings.server.host}:{settings.server.port}"
    ).rstrip("/")
    admin = settings.admin_api_keys
    key = os.environ.get("MIMIC_API_KEY") or (admin[0].get() if admin else "")
    try:
        response = httpx.request(
            method, f"{base}{path}", headers={"X-API-Key": key}, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        print(
            f"mimic: cannot reach {base} ({type(exc).__name__}); is `make run` up? On another "
            "port or host, set MIMIC_URL (e.g. MIMIC_URL=http://127.0.0.1:9000) or MIMIC_PORT",
            file=sys.stderr,
        )
        return 1
    try:
        answer = response.json()
    except ValueError:  # not Mimic answering (a proxy's error page, another service)
        print(
            f"mimic: {response.status_code} from {base}{path}, not JSON; is MIMIC_URL Mimic's API?",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if response.is_success else 1


def cmd_events(args: argparse.Namespace) -> int:
    params = {}
    for item in args.filters:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"mimic: filters are name=value, got {item!r}", file=sys.stderr)
            return 2
        params[name] = value
    return _api("GET", "/api/v1/gateway/webhooks/events", params=params)


def cmd_event(args: argparse.Namespace) -> int:
    return _api("GET", f"/api/v1/gateway/webhooks/events/{args.event}")


def cmd_replay(args: argparse.Namespace) -> int:
    return _api("POST", f"/api/v1/gateway/webhooks/events/{args.event}/replay")


def cmd_retry(args: argparse.Namespace) -> int:
    return _api("POST", f"/api/v1/gateway/webhooks/deliveries/{args.delivery}/retry")


class UsageError(Exception):
    """Bad input on the command line: one line, exit 2, nothing sent."""


DESTINATIONS = "/api/v1/gateway/destinations"
ROUTES = "/api/v1/gateway/routes"
#: --option -> the destination policy's field.
POLICY_OPTIONS = {
    "timeout": "timeout_seconds",
    "max_attempts": "max_attempts",
    "backoff_base": "backoff_base_seconds",
    "backoff_max": "backoff_max_seconds",
    "rate": "rate_per_second",
    "circuit_failures": "circuit_failures",
}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} takes NAME=VALUE, got {item!r}")
        found[name] = value
    return found


def _destination_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.url is not None:
        body["url"] = args.url
    if args.header:
        body["headers"] = _pairs(args.header, "--header")
    if args.api_key_env is not None:
        if not args.api_key_env:
            raise UsageError("--api-key-env takes the name of an environment variable")
        value = os.environ.get(args.api_key_env)
        if not value:
            raise UsageError(f"--api-key-env: {args.api_key_env} is unset or empty")
        if args.api_key_header is None and args.action == "update":
            # The API would put X-API-Key in place of the current header: make it explicit.
            raise UsageError("update --api-key-env replaces the key: give --api-key-header too")
        body["api_key"] = {"value": value, "header": args.api_key_header or "X-API-Key"}
    elif args.api_key_header is not None:
        raise UsageError("--api-key-header goes with --api-key-env")
    elif getattr(args, "no_api_key", False):
        body["api_key"] = None
    if args.signing is not None:
        body["signing"] = args.signing
    policy = {
        field: getattr(args, option)
        for option, field in POLICY_OPTIONS.items()
        if getattr(args, option) is not None
    }
    if policy:
        body["policy"] = policy
    return body


def _route_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("provider", "destination", "name", "path", "body"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    if args.events is not None:
        body["event_types"] = [t.strip() for t in args.events.split(",") if t.strip()]
    conditions: list[Any] = []
    for item in args.where:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise UsageError(f"--where takes PATH=VALUE, got {item!r}")
        conditions.append({"path": path, "op": "eq", "value": value})
    for raw in args.filter:
        try:
            condition = json.loads(raw)
        except json.JSONDecodeError:
            condition = None
        if not isinstance(condition, dict):
            raise UsageError(f"--filter takes a JSON object (a condition), got {raw!r}")
        conditions.append(condition)
    if conditions:
        body["filter"] = conditions
    if args.enabled is not None:
        body["enabled"] = args.enabled
    return body


def _payload(raw: str) -> dict[str, Any]:
    try:
        text = pathlib.Path(raw[1:]).read_text() if raw.startswith("@") else raw
        payload = json.loads(text)
    except OSError as exc:
        raise UsageError(f"--payload: cannot read {raw[1:]}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise UsageError("--payload takes a JSON object, or @file holding one")
    return payload


def cmd_destinations(args: argparse.Namespace) -> int:
    name = getattr(args, "name", None)
    try:
        if args.action == "list":
            return _api("GET", DESTINATIONS)
        if args.action == "show":
            return _api("GET", f"{DESTINATIONS}/{name}")
        if args.action == "create":
            return _api("POST", DESTINATIONS, json={"name": name, **_destination_body(args)})
        if args.action == "update":
            return _api("PATCH", f"{DESTINATIONS}/{name}", json=_destination_body(args))
        if args.action == "delete":
            params = {"force": "true"} if args.force else {}
            return _api("DELETE", f"{DESTINATIONS}/{name}", params=params)
        if args.action == "rotate-secret":
            body = {"previous_valid_seconds": args.previous_valid_seconds}
            return _api("POST", f"{DESTINATIONS}/{name}/rotate-secret", json=body)
        return _api("POST", f"{DESTINATIONS}/{name}/{args.action}")  # pause, resume, disable
    except UsageError as exc:
        print(f"mimic: {exc}", file=sys.stderr)
        return 2


def cmd_routes(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            filters = {k: v for k in ("destination", "provider") if (v := getattr(args, k))}
            return _api("GET", ROUTES, params=filters)
        if args.action == "show":
            return _api("GET", f"{ROUTES}/{args.id}")
        if args.action == "create":
            return _api("POST", ROUTES, json=_route_body(args))
        if args.action == "update":
            return _api("PATCH", f"{ROUTES}/{args.id}", json=_route_body(args))
        if args.action == "delete":
            return _api("DELETE", f"{ROUTES}/{args.id}")
        body: dict[str, Any] = {}
        if args.event_id:
            if args.provider or args.payload or args.event_type:
                raise UsageError(
                    "routes test takes --event-id, or --provider and --payload: not both"
                )
            body["event_id"] = str(args.event_id)
        else:
            if not (args.provider and args.payload):
                raise UsageError("routes test takes --event-id, or --provider and --payload")
            body = {"provider": args.provider, "payload": _payload(args.payload)}
            if args.event_type:
                body["event_type"] = args.event_type
        return _api("POST", f"{ROUTES}/test", json=body)
    except UsageError as exc:
        print(f"mimic: {exc}", file=sys.stderr)
        return 2


def _destination_options(parser: argparse.ArgumentParser, *, create: bool) -> None:
    parser.add_argument("name", help="the destination's name (a slug: crm, billing-eu)")
    parser.add_argument("--url", required=create, help="base URL; a route's path is appended")
    parser.add_argument(
        "--header", action="append", default=[], help="a static header NAME=VALUE (repeatable)"
    )
    api_key = parser.add_mutually_exclusive_group()
    api_key.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="send the API key held in this environment variable (never typed on the line)",
    )
    if not create:
        api_key.add_argument("--no-api-key", action="store_true", help="remove the API key")
    parser.add_argument(
        "--api-key-header",
        metavar="HEADER",
        help="the API key's header (default X-API-Key; with update --api-key-env, required)",
    )
    signing = parser.add_mutually_exclusive_group()
    signing.add_argument(
        "--signing",
        dest="signing",
        action="store_true",
        default=None,
        help="sign deliveries per Standard Webhooks (the secret is shown once)",
    )
    signing.add_argument("--no-signing", dest="signing", action="store_false", help="stop signing")
    parser.add_argument("--timeout", type=float, help="seconds per attempt")
    parser.add_argument("--max-attempts", type=int, help="attempts before failing for good")
    parser.add_argument("--backoff-base", type=float, help="first retry delay, doubling")
    parser.add_argument("--backoff-max", type=float, help="longest retry delay")
    parser.add_argument("--rate", type=float, help="at most this many deliveries per second")
    parser.add_argument(
        "--circuit-failures", type=int, help="open a circuit after this many failed attempts"
    )


def _route_options(parser: argparse.ArgumentParser, *, create: bool) -> None:
    if create:
        parser.add_argument("--provider", required=True, choices=("stripe", "resend", "postmark"))
    parser.add_argument(
        "--events",
        required=create,
        help="event types, comma-separated: exact, a prefix like customer.subscription.*, or *",
    )
    parser.add_argument("--destination", required=create, help="the destination's name")
    parser.add_argument("--name", help="a name for the route (a slug)")
    parser.add_argument("--path", help="appended to the destination's URL")
    parser.add_argument("--body", choices=("envelope", "event", "inkpass"), help="what is sent")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="only events whose payload has the string VALUE at PATH "
        "(data.object.metadata.plan=pro); other types: --filter",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="JSON",
        help='any condition: \'{"path": "...", "op": "in", "value": ["a", "b"]}\'',
    )
    enabled = parser.add_mutually_exclusive_group()
    enabled.add_argument("--enabled", dest="enabled", action="store_true", default=None)
    enabled.add_argument("--disabled", dest="enabled", action="store_false")


def _gateway_parsers(sub: Any) -> None:
    destinations = sub.add_parser(
        "destinations", help="internal services that receive deliveries (the admin API)"
    )
    actions = destinations.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every destination")
    for action, text in (
        ("show", "one destination"),
        ("pause", "deliveries wait until resumed"),
        ("resume", "send what waited, oldest first"),
        ("disable", "new events no longer go to it"),
    ):
        actions.add_parser(action, help=text).add_argument("name")
    _destination_options(actions.add_parser("create", help="a new destination"), create=True)
    _destination_options(
        actions.add_parser("update", help="change the options given"), create=False
    )
    delete = actions.add_parser("delete", help="delete a destination")
    delete.add_argument("name")
    delete.add_argument(
        "--force",
        action="store_true",
        help="also delete its routes and fail its unfinished deliveries",
    )
    rotate = actions.add_parser("rotate-secret", help="a new signing secret (shown once)")
    rotate.add_argument("name")
    rotate.add_argument(
        "--previous-valid-seconds",
        type=int,
        default=86_400,
        help="how long the previous secret still signs (default a day)",
    )
    destinations.set_defaults(func=cmd_destinations)

    routes = sub.add_parser("routes", help="which events go to which destination")
    actions = routes.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every route")
    listing.add_argument("--destination")
    listing.add_argument("--provider", choices=("stripe", "resend", "postmark"))
    for action, text in (("show", "one route"), ("delete", "delete a route")):
        actions.add_parser(action, help=text).add_argument(
            "id", type=uuid.UUID, help="the route's id"
        )
    _route_options(actions.add_parser("create", help="a new route"), create=True)
    update = actions.add_parser("update", help="change the options given")
    update.add_argument("id", type=uuid.UUID, help="the route's id")
    _route_options(update, create=False)
    test = actions.add_parser("test", help="dry run: which routes match, what each would get")
    test.add_argument("--event-id", type=uuid.UUID, help="a stored event's uuid")
    test.add_argument("--provider", choices=("stripe", "resend", "postmark"))
    test.add_argument("--payload", help="the event as JSON, or @file")
    test.add_argument("--event-type", help="when the payload does not name it")
    routes.set_defaults(func=cmd_routes)


def cmd_jobs(args: argparse.Namespace) -> int:
    """procrastinate's shell commands on Mimic's app (`mimic jobs list_jobs status=failed`,
    `mimic jobs retry 42`). Unlike `procrastinate shell`, a failure is one line on stderr and
    exit status 1, not a traceback and 0."""
    import shlex

    from procrastinate import shell, utils

    from mimic import worker

    class Shell(shell.ProcrastinateShell):
        failed = False

        def onecmd(self, line: str) -> bool:
            try:
                return bool(cmd.Cmd.onecmd(self, line))
            except Exception as exc:
                self.failed = True
                print(f"mimic jobs: {_root_reason(exc)}", file=sys.stderr)
                return False

        def default(self, line: str) -> None:
            self.failed = True
            print(
                f"mimic jobs: unknown command {line.split()[0]!r}; `mimic jobs help` lists them",
                file=sys.stderr,
            )

    app = worker.app
    runner = Shell(app.job_manager)

    async def run() -> None:
        async with app.open_async():
            await utils.sync_to_async(runner.onecmd, line=shlex.join(args.words))

    try:
        asyncio.run(run())
    except Exception as exc:  # opening or closing procrastinate's pool: the database
        print(
            f"mimic jobs: cannot reach the database (check DATABASE_URL): {_root_reason(exc)}",
            file=sys.stderr,
        )
        return 1
    return 1 if runner.failed else 0


def _root_reason(exc: BaseException) -> str:
    """The first line of the innermost cause (procrastinate wraps the database's words)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="run a procrastinate worker")
    worker.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        help="worker processes to run (each with its own webhook and email slots)",
    )
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("run", help="dev: API + worker (+ embedded Postgres)").set_defaults(func=cmd_run)
    standin = sub.add_parser("inkpass-standin", help="dev: a local inkpass that answers 200")
    standin.add_argument("--port", type=int, default=8002)
    standin.set_defaults(func=cmd_inkpass_standin)
    events = sub.add_parser(
        "events", help="list stored events (the admin API), e.g. `mimic events status=failed`"
    )
    events.add_argument("filters", nargs="*", help="provider=, status=, event_type=, since=, ...")
    events.set_defaults(func=cmd_events)
    event = sub.add_parser("event", help="one event with its deliveries")
    event.add_argument("event", help="Mimic's event uuid")
    event.set_defaults(func=cmd_event)
    replay = sub.add_parser("replay", help="route an event again by today's routes")
    replay.add_argument("event", help="Mimic's event uuid")
    replay.set_defaults(func=cmd_replay)
    retry = sub.add_parser("retry", help="one more attempt for a failed delivery")
    retry.add_argument("delivery", help="the delivery's uuid")
    retry.set_defaults(func=cmd_retry)
    keys = sub.add_parser("keys", help="tenant API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="a new key for one tenant (shown once)")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument("--name", default="", help="a label, e.g. who holds the key")
    listing = keys_sub.add_parser("list", help="every tenant key (ids, never the keys)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", help="the key's id (key_...), from `mimic keys list`")
    keys.set_defaults(func=cmd_keys)
    jobs = sub.add_parser(
        "jobs",
        help="procrastinate's shell commands, e.g. `mimic jobs list_jobs status=failed`, "
        "`mimic jobs retry 42` (the id from list_jobs)",
    )
    jobs.add_argument("words", nargs="+", help="a procrastinate shell command and its arguments")
    jobs.set_defaults(func=cmd_jobs)
    _gateway_parsers(sub)
    sub.add_parser(
        "rotate-keys",
        help="re-encrypt BYOK credentials and destinations' secrets with the newest key",
    ).set_defaults(func=cmd_rotate_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mimic: configuration error: {exc}", file=sys.stderr)
        return 2
    except MimicError as exc:
        print(f"mimic: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
