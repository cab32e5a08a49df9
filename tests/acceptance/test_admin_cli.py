"""`mimic events`, `mimic replay`, `mimic retry` (what `make events|replay|retry` run), and
`mimic keys` for tenant keys."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from mimic.app import create_app
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    live_api,
    make_settings,
    stripe_event,
    stripe_headers,
)

pytestmark = pytest.mark.slow

WEBHOOK = "/api/v1/gateway/webhooks/stripe"


def mimic(*args: str, url: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MIMIC_URL": url,
        "MIMIC_API_KEY": TEST_SECRETS["MIMIC_API_KEYS"],
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "mimic", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_admin_commands_call_the_api(database_url: str) -> None:
    settings = make_settings(database_url)
    async with client_for(create_app(settings)) as client:
        body = stripe_event("invoice.paid", id="evt_cli")
        response = await client.post(
            "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
        )
        event_id = response.json()["event_id"]
    async with live_api(settings) as url:
        listed = await asyncio.to_thread(mimic, "events", "provider=stripe", url=url)
        assert listed.returncode == 0, listed.stderr
        assert [e["event_id"] for e in json.loads(listed.stdout)["items"]] == ["evt_cli"]

        replayed = await asyncio.to_thread(mimic, "replay", event_id, url=url)
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["routes"][0]["target_service"] == "inkpass"

        missing = await asyncio.to_thread(mimic, "retry", str(uuid.uuid4()), url=url)
        assert missing.returncode == 1
        assert json.loads(missing.stdout)["error"] == "not_found"

        bad = await asyncio.to_thread(mimic, "events", "provider", url=url)
        assert bad.returncode == 2
        assert "name=value" in bad.stderr
    gone = await asyncio.to_thread(mimic, "events", url=url)
    assert gone.returncode == 1
    assert "is `make run` up?" in gone.stderr
    assert "MIMIC_URL" in gone.stderr


async def test_tenant_keys_are_created_listed_and_revoked(database_url: str) -> None:
    settings = make_settings(database_url)
    env = {"DATABASE_URL": database_url}
    created = await asyncio.to_thread(mimic, "keys", "create", "--tenant", "acme", **env)
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines())
    kid, key = fields["id"].strip(), fields["key"].strip()
    assert key.startswith("mimic_tk_")
    assert "not shown again" in created.stderr

    listed = await asyncio.to_thread(mimic, "keys", "list", **env)
    assert listed.stdout.split("\t")[:2] == [kid, "acme"]
    assert key not in listed.stdout
    assert "live" in listed.stdout

    async with client_for(create_app(settings)) as client:
        own = await client.get("/api/v1/notifications", headers={"X-API-Key": key})
        assert own.status_code == 200
        revoked = await asyncio.to_thread(mimic, "keys", "revoke", kid, **env)
        assert revoked.returncode == 0, revoked.stderr
        after = await client.get("/api/v1/notifications", headers={"X-API-Key": key})
        assert after.status_code == 401
    assert "revoked" in (await asyncio.to_thread(mimic, "keys", "list", **env)).stdout

    unknown = await asyncio.to_thread(mimic, "keys", "revoke", "key_000000000000", **env)
    assert unknown.returncode == 1
    assert "mimic keys list" in unknown.stderr
    bad = await asyncio.to_thread(mimic, "keys", "create", "--tenant", "no spaces", **env)
    assert bad.returncode == 1
    assert "tenant_id must be" in bad.stderr


async def test_jobs_runs_procrastinate_shell_commands_and_fails_in_one_line(
    database_url: str,
) -> None:
    # A webhook stored through the API leaves one job to list and retry.
    settings = make_settings(database_url)
    async with client_for(create_app(settings)) as client:
        body = stripe_event(id="evt_jobs_cli")
        assert (await client.post(WEBHOOK, content=body, headers=stripe_headers(body))).is_success

    listed = await asyncio.to_thread(mimic, "jobs", "list_jobs", DATABASE_URL=database_url)
    assert listed.returncode == 0, listed.stderr
    assert "route_to_inkpass_subscription_created on webhooks - [todo]" in listed.stdout

    missing = await asyncio.to_thread(mimic, "jobs", "retry", "999999", DATABASE_URL=database_url)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "mimic jobs: Job was not found or has an invalid status to retry (job id: 999999)"
    ]

    unknown = await asyncio.to_thread(mimic, "jobs", "frobnicate", DATABASE_URL=database_url)
    assert unknown.returncode == 1
    assert "unknown command 'frobnicate'" in unknown.stderr
