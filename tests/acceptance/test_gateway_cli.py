"""`mimic destinations` and `mimic routes` (what `make destinations|routes` run), over the
admin API of a real server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers import TEST_SECRETS, live_api, make_settings, stripe_event, stripe_headers

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
    new_key = "crm-second-key-abcdwxyz"
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
        assert missing.stderr == "mimic: --api-key-env: CRM_KEY is unset or empty\n"
        assert missing.stdout == ""
        before = await run("destinations", "list", url=url)
        assert [d["name"] for d in json.loads(before.stdout)] == ["inkpass"]  # nothing sent

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
        assert bad.stderr == "mimic: --where takes PATH=VALUE, got 'nonsense'\n"
        # Bad input on the line: one line on stderr, exit 2, nothing sent.
        local = [
            ("routes", "create", "--provider", "stripe", "--events", "x", "--destination", "crm",
             "--filter", "{not json"),
            ("routes", "create", "--provider", "stripe", "--events", "x", "--destination", "crm",
             "--filter", "[1]"),
            ("routes", "test", "--provider", "stripe", "--payload", "{not json"),
            ("routes", "test", "--provider", "stripe", "--payload", "@/nonexistent/payload.json"),
            ("routes", "test", "--provider", "stripe"),
            ("destinations", "update", "crm", "--api-key-header", "Authorization"),
        ]  # fmt: skip
        answers = await asyncio.gather(*(run(*args, url=url) for args in local))
        for args, answer in zip(local, answers, strict=True):
            assert answer.returncode == 2, args
            assert answer.stdout == "", args
            assert answer.stderr.startswith("mimic: "), args
            assert answer.stderr.count("\n") == 1, (args, answer.stderr)
        routes_now = await run("routes", "list", "--destination", "crm", url=url)
        assert [r["name"] for r in json.loads(routes_now.stdout)] == ["pro-to-crm"]

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
        assert paused.returncode == 0, paused.stderr
        assert json.loads(paused.stdout)["state"] == "paused"
        shown = await run("destinations", "show", "crm", url=url)
        assert json.loads(shown.stdout)["state"] == "paused"
        resumed = await run("destinations", "resume", "crm", url=url)
        assert json.loads(resumed.stdout)["state"] == "active"
        disabled = await run("destinations", "disable", "crm", url=url)
        assert json.loads(disabled.stdout)["state"] == "disabled"
        await run("destinations", "resume", "crm", url=url)

        rotated = await run(
            "destinations", "rotate-secret", "crm", "--previous-valid-seconds", "60", url=url
        )
        assert rotated.returncode == 0, rotated.stderr
        after = json.loads(rotated.stdout)
        assert after["signing_secret"].startswith("whsec_")
        assert after["signing_secret"] != created["signing_secret"]
        assert len(after["signing_secrets"]) == 2

        # Replacing the key needs its header said again (else the API would reset it).
        unsaid = await run("destinations", "update", "crm", "--api-key-env", "CRM_KEY", url=url,
                           CRM_KEY=new_key)  # fmt: skip
        assert unsaid.returncode == 2
        assert "--api-key-header" in unsaid.stderr
        updated = await run(
            "destinations",
            "update",
            "crm",
            "--api-key-env",
            "CRM_KEY",
            "--api-key-header",
            "Authorization",
            "--no-signing",
            "--max-attempts",
            "3",
            url=url,
            CRM_KEY=new_key,
        )
        assert updated.returncode == 0, updated.stderr
        changed = json.loads(updated.stdout)
        assert changed["api_key"] == {"header": "Authorization", "last4": "wxyz"}
        assert changed["signing_secrets"] == []
        assert changed["policy"]["max_attempts"] == 3
        assert changed["policy"]["rate_per_second"] == 5  # untouched
        removed = await run("destinations", "update", "crm", "--no-api-key", url=url)
        assert json.loads(removed.stdout)["api_key"] is None

        # A route changed by id, then a stored event tested against it.
        route_id = stored["id"]
        changed_route = await run(
            "routes",
            "update",
            route_id,
            "--events",
            "invoice.paid",
            "--filter",
            '{"path": "data.object.metadata.plan", "op": "in", "value": ["pro", "team"]}',
            "--disabled",
            url=url,
        )
        assert changed_route.returncode == 0, changed_route.stderr
        now = json.loads(changed_route.stdout)
        assert now["event_types"] == ["invoice.paid"]
        assert now["filter"] == [
            {"path": "data.object.metadata.plan", "op": "in", "value": ["pro", "team"]}
        ]
        assert now["enabled"] is False
        await run("routes", "update", route_id, "--enabled", url=url)
        body = stripe_event("invoice.paid", obj={"metadata": {"plan": "team"}})
        async with httpx.AsyncClient() as client:
            received = await client.post(
                f"{url}/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
            )
        event_id = received.json()["event_id"]
        by_id = await run("routes", "test", "--event-id", event_id, url=url)
        assert by_id.returncode == 0, by_id.stderr
        assert "pro-to-crm" in [m["route"]["name"] for m in json.loads(by_id.stdout)["matched"]]
        listed_routes = await run("routes", "list", "--provider", "stripe", url=url)
        assert route_id in [r["id"] for r in json.loads(listed_routes.stdout)]

        in_use = await run("destinations", "delete", "crm", url=url)
        assert in_use.returncode == 1
        assert json.loads(in_use.stdout)["error"] == "destination_in_use"
        forced = await run("destinations", "delete", "crm", "--force", url=url)
        assert forced.returncode == 0, forced.stderr
        assert json.loads(forced.stdout)["routes_deleted"] == 1
        gone = await run("routes", "show", route_id, url=url)
        assert gone.returncode == 1
        assert json.loads(gone.stdout)["error"] == "not_found"

        outputs = [missing, made, listed, route, tested, paused, resumed, shown, rotated]
        outputs += [unsaid, updated, removed, changed_route, by_id, in_use, forced]
        assert all(key not in o.stdout + o.stderr for o in outputs)
        assert all(new_key not in o.stdout + o.stderr for o in outputs)
