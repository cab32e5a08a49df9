"""DATABASE_READ_URL against a real streaming standby (pg_basebackup from the embedded
PostgreSQL's programs): admin lists read the replica; a detail it lacks falls back to the
primary; webhooks are stored on the primary."""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from mimic.app import create_app
from mimic.core.embedded import bin_dir
from tests.helpers import ADMIN, live_api, make_settings, stripe_event, stripe_headers, wait_for
from tests.procs import free_port

pytestmark = pytest.mark.slow


def _as_owner(owner: int, command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", *command]


@contextlib.contextmanager
def standby_of(database_url: str) -> Iterator[str]:
    """A streaming standby of ``database_url``'s server, on a port of its own; its DSN."""
    parts = urllib.parse.urlsplit(database_url)
    socket_dir = urllib.parse.parse_qs(parts.query).get("host", [""])[0]
    user = urllib.parse.unquote(parts.username or "postgres")
    owner = os.stat(socket_dir).st_uid
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mimic-standby-"))
    if os.geteuid() == 0:
        os.chown(tmp, owner, -1)
    data, port = tmp / "data", free_port()
    programs = bin_dir()
    subprocess.run(
        _as_owner(
            owner,
            [
                str(programs / "pg_basebackup"),
                "-D",
                str(data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                socket_dir,
                "-U",
                user,
            ],
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {tmp} -c listen_addresses=''"
    subprocess.run(
        _as_owner(
            owner,
            [
                str(programs / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(tmp / "log"),
                "-o",
                options,
                "-w",
                "start",
            ],
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://{user}@/{parts.path.lstrip('/')}?host={tmp}&port={port}"
    finally:
        subprocess.run(
            _as_owner(
                owner, [str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def _embedded_primary(url: str) -> bool:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return bool(query.get("host", [""])[0].startswith("/"))


async def test_admin_reads_go_to_the_replica_and_fall_back_to_the_primary(
    database_url: str,
) -> None:
    if not _embedded_primary(database_url):
        pytest.skip(
            "the standby is built with the embedded PostgreSQL's pg_basebackup, so the test "
            "server must be the embedded one (TEST_DATABASE_URL unset)"
        )
    with standby_of(database_url) as replica:
        standby = await asyncpg.connect(replica)
        try:
            assert await standby.fetchval("SELECT pg_is_in_recovery()")
            settings = make_settings(database_url, DATABASE_READ_URL=replica)
            app = create_app(settings)
            async with (
                live_api(settings, app) as url,
                httpx.AsyncClient(base_url=url, headers=ADMIN) as http,
            ):

                async def send(event_id: str) -> str:
                    body = stripe_event("invoice.paid", id=event_id)
                    answer = await http.post(
                        "/api/v1/gateway/webhooks/stripe",
                        content=body,
                        headers=stripe_headers(body),
                    )
                    assert answer.status_code == 200, answer.text  # stored on the primary
                    return str(answer.json()["event_id"])

                async def listed() -> list[str]:
                    page = await http.get("/api/v1/gateway/webhooks/events")
                    assert page.status_code == 200, page.text
                    return [e["event_id"] for e in page.json()["items"]]

                await send("evt_replica_1")

                async def replicated() -> bool:
                    return await listed() == ["evt_replica_1"]

                await wait_for(replicated, within=15)

                # The standby stops replaying: a new event is on the primary only.
                await standby.execute("SELECT pg_wal_replay_pause()")
                newest = await send("evt_replica_2")
                assert await listed() == ["evt_replica_1"]  # the list reads the replica
                detail = await http.get(f"/api/v1/gateway/webhooks/events/{newest}")
                assert detail.status_code == 200  # the detail falls back to the primary
                assert detail.json()["event_id"] == "evt_replica_2"

                await standby.execute("SELECT pg_wal_replay_resume()")

                async def caught_up() -> bool:
                    return await listed() == ["evt_replica_2", "evt_replica_1"]

                await wait_for(caught_up, within=15)
        finally:
            await standby.close()
