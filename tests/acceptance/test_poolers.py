"""Behind a real PgBouncer: the API through a transaction-mode pool (asyncpg's statement cache
off), the worker through a session-mode pool (procrastinate LISTENs), migrations direct."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, SmtpSink
from tests.helpers import (
    live_api,
    make_settings,
    running_worker,
    stripe_event,
    stripe_headers,
    wait_for_value,
)
from tests.procs import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("pgbouncer") is None,
        reason="no PgBouncer installed (apt-get install pgbouncer; .ci/run installs it)",
    ),
]


@contextlib.contextmanager
def pgbouncer(database_url: str) -> Iterator[dict[str, str]]:
    """A PgBouncer in front of ``database_url``'s database: DSNs of a transaction-mode and a
    session-mode pool."""
    # Not pytest's tmp_path: its parents are private to root, and PgBouncer may run as
    # another user (below).
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mimic-pgbouncer-"))
    parts = urllib.parse.urlsplit(database_url)
    query = urllib.parse.parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = parts.port or 5432
    user = urllib.parse.unquote(parts.username or "postgres")
    dbname = parts.path.lstrip("/")
    listen = free_port()
    # PgBouncer will not run as root: it then runs as whoever owns the server's socket
    # directory (the embedded server's user), so that it can reach that socket.
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = os.stat(host).st_uid if host.startswith("/") else pwd.getpwnam("nobody").pw_uid
        name = pwd.getpwuid(owner).pw_name
        run_as = ["-u", name]
        os.chown(tmp, owner, -1)
    upstream = f"host={host} port={port} dbname={dbname} user={user}"
    (tmp / "pgbouncer.ini").write_text(
        "[databases]\n"
        # Two server connections for the API's many clients; a session pool big enough for
        # every connection of the worker (in session mode each holds one for its lifetime).
        f"tx = {upstream} pool_mode=transaction pool_size=2\n"
        f"session = {upstream} pool_mode=session pool_size=60\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\n"
        f"unix_socket_dir = {tmp}\nauth_type = any\n"
        "max_client_conn = 200\n"
        f"logfile = {tmp}/pgbouncer.log\npidfile = {tmp}/pgbouncer.pid\n"
        "ignore_startup_parameters = extra_float_digits,application_name,statement_timeout\n"
    )
    os.chmod(tmp / "pgbouncer.ini", 0o644)
    proc = subprocess.Popen(["pgbouncer", *run_as, str(tmp / "pgbouncer.ini")])
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", listen), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = tmp / "pgbouncer.log"
                raise AssertionError(
                    f"pgbouncer did not start: {log.read_text() if log.exists() else ''}"
                )
            time.sleep(0.05)
        base = f"postgresql://{user}@127.0.0.1:{listen}"
        yield {"transaction": f"{base}/tx", "session": f"{base}/session"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


async def test_ingest_delivery_and_email_through_pgbouncer(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    with pgbouncer(database_url) as pools, SmtpSink() as smtp:
        common = {
            "INKPASS_INTERNAL_URL": inkpass.url,
            "EMAIL_PROVIDER": "dev",
            "DEV_SMTP_HOST": "127.0.0.1",
            "DEV_SMTP_PORT": str(smtp.port),
        }
        # The API: every query through the transaction pool, prepared statements off.
        api: Settings = make_settings(
            pools["transaction"],
            MIMIC_DB_STATEMENT_CACHE_SIZE="0",
            DATABASE_DIRECT_URL=database_url,
            **common,
        )
        # The worker: a session pool (procrastinate's LISTEN needs one).
        worker: Settings = make_settings(pools["session"], **common)
        app = create_app(api)
        async with live_api(api, app) as url, httpx.AsyncClient(base_url=url) as http:
            admin = {"X-API-Key": "admin_test_key_0123456789abcdef0123"}

            async def webhook(i: int) -> httpx.Response:
                body = stripe_event("invoice.paid", id=f"evt_pool_{i}")
                return await http.post(
                    "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
                )

            async def lists() -> httpx.Response:
                return await http.get("/api/v1/gateway/webhooks/events", headers=admin)

            # More client connections at once than the pool has server connections: each
            # statement may run on another server connection than the last one did.
            answers = await asyncio.gather(
                *(webhook(i) for i in range(20)), *(lists() for _ in range(20))
            )
            assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
            sent = await http.post(
                "/api/v1/notifications/email",
                json={
                    "template": "welcome",
                    "to": ["ann@example.com"],
                    "data": {"name": "Ann", "login_url": "https://example.com"},
                },
                headers={"X-API-Key": "admin_test_key_0123456789abcdef0123"},
            )
            assert sent.status_code == 202, sent.text
            listed = await http.get(
                "/api/v1/gateway/webhooks/events",
                params={"provider": "stripe"},
                headers={"X-API-Key": "admin_test_key_0123456789abcdef0123"},
            )
            assert listed.status_code == 200
            assert len(listed.json()["items"]) == 20
            conn = await asyncpg.connect(database_url)
            try:
                async with running_worker(worker):
                    await wait_for_value(
                        conn,
                        "SELECT count(*) FROM webhook_events WHERE status = 'delivered'",
                        until=lambda n: n == 20,
                        within=20,
                    )
                    await wait_for_value(
                        conn,
                        "SELECT status FROM notifications",
                        until=lambda s: s == "sent",
                        within=20,
                    )
            finally:
                await conn.close()
        assert len({r.headers["idempotency-key"] for r in inkpass.requests}) == 20
        assert len(smtp.messages) == 1
