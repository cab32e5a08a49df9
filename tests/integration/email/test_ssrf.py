"""A tenant's SMTP host cannot reach inside: the address is checked at send time, only SMTP
ports are allowed, and a server's words never come back through the API."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.settings import Settings
from tests.fakes import SmtpSink
from tests.helpers import ADMIN, make_settings, running_worker, wait_for_value


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain TCP listener on loopback: an 'internal service' that must not be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        yield sock


async def tenant_smtp_send(
    client: AsyncTestClient[Litestar], host: str, port: int, to: str = "a@example.com"
) -> str:
    body = {
        "from_email": "mail@acme.example",
        "smtp": {"host": host, "port": port, "security": "none"},
    }
    put = await client.put("/api/v1/tenants/acme/credentials/smtp", json=body, headers=ADMIN)
    assert put.status_code == 200, put.text
    send = {
        "to": to,
        "template": "welcome",
        "tenant_id": "acme",
        "data": {"name": "A", "login_url": "https://example.com"},
    }
    response = await client.post("/api/v1/notifications/email", json=send, headers=ADMIN)
    assert response.status_code == 202, response.text
    nid: str = response.json()["id"]
    return nid


async def final_error(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, nid: str
) -> str:
    async with running_worker(settings):
        await wait_for_value(
            db, "SELECT status FROM notifications", until=lambda v: v in {"sent", "failed"}
        )
    shown = await client.get(f"/api/v1/notifications/{nid}", headers=ADMIN)
    assert shown.json()["status"] == "failed"
    error: str = shown.json()["error"]
    return error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "::ffff:127.0.0.1"])
async def test_a_loopback_smtp_host_is_refused_without_connecting(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    listener: socket.socket,
    host: str,
) -> None:
    port = 2525  # an SMTP port, so only the address rule can refuse it
    nid = await tenant_smtp_send(client, host.strip("[]"), port)
    error = await final_error(client, settings, db, nid)
    assert error.startswith("SMTP destination refused: host resolves to a non-public address")
    assert "SMTP_ALLOWED_HOSTS" in error


async def test_a_port_outside_smtp_is_refused(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    nid = await tenant_smtp_send(client, "127.0.0.1", port)
    error = await final_error(client, settings, db, nid)
    assert error.startswith(f"SMTP destination refused: port {port} is not allowed")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected


async def test_an_allowed_host_is_reached_and_its_reply_text_is_not_stored(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    with SmtpSink(refuse={"gone@example.com"}) as server:
        settings = make_settings(
            database_url, EMAIL_PROVIDER="dev", SMTP_ALLOWED_HOSTS=f"127.0.0.1:{server.port}"
        )
        nid = await tenant_smtp_send(client, "127.0.0.1", server.port, to="gone@example.com")
        error = await final_error(client, settings, db, nid)
    assert error == "SMTP refused recipients: gone@example.com (550)"
    stored = await db.fetchval(
        "SELECT string_agg(coalesce(detail, ''), ' ') FROM notification_events"
    )
    assert "mailbox unavailable" not in error + stored  # the server's own words


async def test_the_allowlist_is_exact_about_ports(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    with SmtpSink() as server:
        # Allowed on the usual SMTP ports only: this server's port is not one of them.
        settings = make_settings(database_url, SMTP_ALLOWED_HOSTS="127.0.0.1")
        nid = await tenant_smtp_send(client, "127.0.0.1", server.port)
        error = await final_error(client, settings, db, nid)
    assert "is not allowed" in error
    assert server.messages == []


def test_a_malformed_allowlist_stops_startup_naming_the_variable() -> None:
    from mimic.core.settings import ConfigError

    with pytest.raises(ConfigError, match=r"^SMTP_ALLOWED_HOSTS: invalid value"):
        Settings.from_env({"SMTP_ALLOWED_HOSTS": "host:notaport"})
