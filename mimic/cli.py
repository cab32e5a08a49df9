"""The ``mimic`` command: api, worker, migrate, run (dev: both on the embedded database)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from mimic.core.embedded import resolve_database
from mimic.core.errors import MimicError
from mimic.core.logs import configure_logging
from mimic.core.migrate import load_steps, migrate
from mimic.core.settings import ConfigError, Settings


def _prepare(*, run_migrations: bool = True) -> Settings:
    settings = resolve_database(Settings.from_env(os.environ))
    configure_logging(settings)
    if run_migrations:
        assert settings.database.url is not None
        asyncio.run(migrate(settings.database.url.get(), load_steps()))
    return settings


def cmd_migrate(_: argparse.Namespace) -> int:
    _prepare()
    print("mimic: schema is current")
    return 0


def cmd_api(_: argparse.Namespace) -> int:
    import uvicorn

    from mimic.app import create_app

    settings = _prepare()
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from mimic.worker import run_worker

    settings = _prepare()
    asyncio.run(run_worker(settings))
    return 0


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    """Re-encrypt every BYOK credential under the first key of MIMIC_ENCRYPTION_KEYS."""
    from mimic.core.deps import open_deps
    from mimic.email.credentials import rotate_credentials

    settings = _prepare()

    async def rotate() -> int:
        async with open_deps(settings) as deps:
            return await rotate_credentials(deps.db, deps.keyring)

    count = asyncio.run(rotate())
    key_id = settings.email.encryption_keys[0].key_id
    print(f"mimic: re-encrypted {count} credential(s) with key {key_id!r}")
    return 0


def cmd_run(_: argparse.Namespace) -> int:
    """Dev: one embedded Postgres, the API and a worker as two child processes."""
    settings = _prepare()
    assert settings.database.url is not None
    env = {**os.environ, "DATABASE_URL": settings.database.url.get()}
    children = [
        subprocess.Popen([sys.executable, "-m", "mimic", name], env=env)
        for name in ("api", "worker")
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    print(
        f"mimic: API on http://{settings.server.host}:{settings.server.port} (docs at /docs), "
        "worker running; Ctrl-C stops both",
        flush=True,
    )
    # If either child exits, stop the other; the embedded Postgres stops with us.
    while all(child.poll() is None for child in children):
        try:
            children[0].wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
    forward(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    # uvicorn re-raises the signal it was stopped with, so "killed by SIGTERM/SIGINT"
    # after we asked it to stop is a clean exit too.
    clean = {0, -signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT}
    return 0 if all(code in clean for code in codes) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    sub.add_parser("worker", help="run a procrastinate worker").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("run", help="dev: API + worker (+ embedded Postgres)").set_defaults(func=cmd_run)
    sub.add_parser(
        "rotate-keys", help="re-encrypt BYOK credentials with the newest encryption key"
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
