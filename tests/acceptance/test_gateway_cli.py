"""`mimic destinations` and `mimic routes` (what `make destinations|routes` run), over the
admin API of a real server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import TEST_SECRETS, live_api, make_settings

pytestmark = pytest.mark.slow


def mimic(*args: str, url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIMIC_URL": url, "MIMIC_API_KEY": TEST_SECRETS["MIMIC_API_KEYS"]}
    env.pop("CRM_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "mimic", *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def run(*args: str, url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(mimic, *args, url=url, **extra)


async def test_routes_and_destinations_from_the_command_line(database_url: str) -> None:
    key = "crm-secret-key-0123456789"
    async with live_api(make_settings(database_url)) as url:
        # The key's value is read from the environment, never from the command line.
        missing = await run(
            "destinations",
            "create",
            "crm",
            "--url",
            "http://127.0.0.1:9",
            "--api-key-env",
            "CRM_KEY",
            url=url,
        )
        assert missing.returncode == 2
        assert "CRM_KEY is unset" in missing.stderr
        assert missing.stdout == ""

        made = await run(
            "destinations",
            "create",
            "crm",
            "--url",
            "http://127.0.0.1:9",
            "--signing",
            "--api-key-env",
            "CRM_KEY",
            "--rate",
            "5",
            url=url,
            CRM_KEY=key,
        )
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert created["signing_secret"].startswith("whsec_")
        assert created["api_key"] == {"header": "X-API-Key", "last4": "6789"}
        assert created["policy"]["rate_per_second"] == 5

        listed = await run("destinations", "list", url=url)
        assert [d["name"] for d in json.loads(listed.stdout)] == ["crm", "inkpass"]
        assert created["signing_secret"] not in listed.stdout

        route = await run(
            "routes",
            "create",
            "--provider",
            "stripe",
            "--events",
            "customer.*,invoice.paid",
            "--destination",
            "crm",
            "--where",
            "data.object.metadata.plan=pro",
            "--name",
            "pro-to-crm",
            url=url,
        )
        assert route.returncode == 0, route.stderr
        stored = json.loads(route.stdout)
        assert stored["event_types"] == ["customer.*", "invoice.paid"]
        assert stored["filter"] == [
            {"path": "data.object.metadata.plan", "op": "eq", "value": "pro"}
        ]

        payload = {"type": "customer.created", "data": {"object": {"metadata": {"plan": "pro"}}}}
        tested = await run(
            "routes", "test", "--provider", "stripe", "--payload", json.dumps(payload), url=url
        )
        assert tested.returncode == 0, tested.stderr
        [match] = json.loads(tested.stdout)["matched"]
        assert match["route"]["name"] == "pro-to-crm"
        assert match["request"]["headers"]["X-API-Key"] == "****6789"

        bad = await run(
            "routes",
            "create",
            "--provider",
            "stripe",
            "--events",
            "x",
            "--destination",
            "crm",
            "--where",
            "nonsense",
            url=url,
        )
        assert bad.returncode == 2
        assert "--where takes NAME=VALUE" in bad.stderr

        refused = await run(
            "routes",
            "create",
            "--provider",
            "stripe",
            "--events",
            "nope.*",
            "--destination",
            "crm",
            url=url,
        )
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"] == "invalid_event_types"

        paused = await run("destinations", "pause", "crm", url=url)
        assert json.loads(paused.stdout)["state"] == "paused"
        resumed = await run("destinations", "resume", "crm", url=url)
        assert json.loads(resumed.stdout)["state"] == "active"

        outputs = [missing, made, listed, route, tested, paused, resumed]
        assert all(key not in o.stdout + o.stderr for o in outputs)
