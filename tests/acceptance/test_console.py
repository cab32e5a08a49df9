"""The operator console, used as a person would: a real headless Chromium against a real server
and a real worker, a local destination that fails and then works."""

from __future__ import annotations

import re

import asyncpg
import httpx
import pytest

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.acceptance.test_docs import CHROMIUM_FLAGS, chromium
from tests.fakes import FakeHTTPServer
from tests.helpers import (
    TEST_SECRETS,
    live_api,
    make_settings,
    new_key,
    running_worker,
    stripe_event,
    stripe_headers,
    wait_for_value,
)

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium installed (apt-get install chromium; .ci/run installs it)",
)
ADMIN = TEST_SECRETS["MIMIC_API_KEYS"]


async def test_an_operator_finds_replays_fixes_and_retries_in_the_console(
    database_url: str, db: asyncpg.Connection, inkpass: FakeHTTPServer
) -> None:
    from playwright.async_api import async_playwright

    settings = make_settings(database_url, INKPASS_INTERNAL_URL=inkpass.url)
    app = create_app(settings)
    async with (
        live_api(settings, app) as url,
        async_playwright() as pw,
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": ADMIN}) as http,
    ):
        # A CRM destination with a wrong URL (nothing listens there): its delivery fails.
        made = await http.post(
            "/api/v1/gateway/destinations",
            json={"name": "crm", "url": "http://127.0.0.1:9", "policy": {"max_attempts": 1}},
        )
        assert made.status_code == 201, made.text
        route = await http.post(
            "/api/v1/gateway/routes",
            json={"provider": "stripe", "event_types": ["customer.*"], "destination": "crm"},
        )
        assert route.status_code == 201, route.text
        for body in (
            stripe_event("customer.created", id="evt_console_crm"),
            stripe_event("invoice.paid", id="evt_console_1"),
        ):
            sent = await http.post(
                "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
            )
            assert sent.status_code == 200
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        elsewhere: list[str] = []

        async def same_origin_only(route, request) -> None:  # type: ignore[no-untyped-def]
            if request.url.startswith(url) or request.url.startswith("about:"):
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        await page.route("**/*", same_origin_only)

        # Signed out, the console sends you to the sign-in form; a wrong key is refused.
        await page.goto(f"{url}/console/events")
        assert page.url.endswith("/console/login")
        await page.get_by_label("Admin API key").fill("not-a-key")
        await page.get_by_role("button", name="Sign in").click()
        assert await page.get_by_role("alert").count() == 1
        await page.get_by_label("Admin API key").fill(ADMIN)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{url}/console")
        assert await page.get_by_role("heading", name="Overview, last 24 hours").count() == 1

        async with running_worker(settings):
            await wait_for_value(
                db,
                "SELECT status FROM webhook_events WHERE event_id = 'evt_console_crm'",
                until=lambda s: s == "failed",
                within=15,
            )

            # Find the inkpass event by Stripe's id and open it: delivered.
            await page.get_by_role("link", name="Events").click()
            await page.get_by_label("Provider's event id").fill("evt_console_1")
            await page.get_by_role("button", name="Find").click()
            await page.wait_for_url(re.compile(r".*/console/events/[0-9a-f-]{36}$"))
            assert "evt_console_1" in (await page.locator("h1").text_content() or "")
            await page.reload()
            assert await page.locator(".status-success").count() >= 1

            # Replay it, with its confirmation.
            await page.get_by_role("link", name="Replay…").click()
            await page.get_by_role("button", name=re.compile("Yes, replay")).click()
            assert "Replayed" in (await page.get_by_role("status").text_content() or "")
            await inkpass.wait_for_requests(2)

            # Dead letters: the CRM delivery; fix the destination's URL; retry; delivered.
            await page.get_by_role("link", name="Dead letters").click()
            row = page.locator("tr", has_text="evt_console_crm")
            assert await row.count() == 1
            assert "could not connect" in (await row.text_content() or "")
            with FakeHTTPServer() as crm:
                await page.goto(f"{url}/console/destinations/crm")
                await page.get_by_label("Base URL").fill(crm.url)
                await page.get_by_role("button", name="Save").click()
                assert "saved" in (await page.get_by_role("status").text_content() or "")
                await page.get_by_role("link", name="Dead letters").click()
                await (
                    page.locator("tr", has_text="evt_console_crm")
                    .get_by_role("button", name="Retry")
                    .click()
                )
                assert "queued again" in (await page.get_by_role("status").text_content() or "")
                await wait_for_value(
                    db,
                    "SELECT status FROM webhook_events WHERE event_id = 'evt_console_crm'",
                    until=lambda s: s == "delivered",
                    within=15,
                )
                [received] = crm.requests
                assert received.json()["event_id"] == "evt_console_crm"

            # Pause and resume a destination.
            await page.goto(f"{url}/console/destinations/crm")
            await page.get_by_role("button", name="Pause").click()
            assert await page.locator(".status-paused").count() == 1
            await page.get_by_role("button", name="Resume").click()
            assert await page.locator(".status-active").count() == 1

        # Suppress an address and take it off again.
        await page.get_by_role("link", name="Suppressions").click()
        await page.get_by_label("Address", exact=True).last.fill("gone@example.com")
        await page.get_by_role("button", name="Suppress").click()
        assert await page.locator("td", has_text="gone@example.com").count() == 1
        await (
            page.locator("tr", has_text="gone@example.com")
            .get_by_role("button", name="Remove")
            .click()
        )
        assert await page.locator("td", has_text="gone@example.com").count() == 0

        # Every action is in the audit log, under the signed-in key.
        await page.get_by_role("link", name="Audit log").click()
        for action in ("retry", "replay", "update_destination", "pause_destination"):
            assert await page.locator("td", has_text=action).count() >= 1, action
        assert await page.locator("td", has_text="add_suppression").count() == 1

        # A form posted without its CSRF token is refused, and so is one after sign-out.
        cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
        async with httpx.AsyncClient(base_url=url, cookies=cookies) as forger:
            forged = await forger.post("/console/destinations/crm/pause", data={})
            assert forged.status_code == 403
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{url}/console/login")
        await page.goto(f"{url}/console/audit")
        assert page.url.endswith("/console/login")
        await browser.close()
    assert elsewhere == []  # no request left for another host
    state = await db.fetchval("SELECT state FROM gateway_destinations WHERE name = 'crm'")
    assert state == "active"  # the forged pause did nothing


async def test_console_pages_carry_a_strict_policy_and_need_a_session(
    settings: Settings,
) -> None:
    async with live_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        login = await http.get("/console/login")
        policy = login.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        # A tenant key is a valid API key, but not for the console.
        tenant_key = await new_key(settings, "acme")
        refused = await http.post("/console/login", data={"key": tenant_key})
        assert refused.status_code == 200
        assert "tenant keys cannot sign in" in refused.text
        assert "set-cookie" not in refused.headers
        away = await http.get("/console/events")
        assert away.status_code == 303
        assert away.headers["location"] == "/console/login"
        signed = await http.post("/console/login", data={"key": ADMIN})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/console" in cookie
        assert ADMIN.lower() not in cookie  # the cookie holds the key's id, sealed
        pages = [
            "/console",
            "/console/events",
            "/console/deliveries",
            "/console/destinations",
            "/console/routes/test",
            "/console/email",
            "/console/suppressions",
            "/console/templates",
            "/console/audit",
            "/console/routes/00000000-0000-5000-8000-000000000001",
            "/console/destinations/inkpass",
        ]
        for path in pages:
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert "<script>" not in page.text  # no inline script anywhere
        # The forms that only show something: a template preview, the routes' dry run, and a
        # bulk retry's progress.
        token = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/console")).text)
        assert token is not None
        csrf = token.group(1)
        preview = await http.post(
            "/console/templates",
            data={"csrf": csrf, "name": "welcome", "data": '{"name": "Ann", "login_url": "x"}'},
        )
        assert preview.status_code == 200
        assert "sandbox srcdoc=" in preview.text
        dry = await http.post(
            "/console/routes/test",
            data={"csrf": csrf, "provider": "stripe", "payload": '{"type": "invoice.paid"}'},
        )
        assert dry.status_code == 200
        assert "stripe invoice.paid: 1 route(s)" in dry.text
        bulk = await http.post("/console/deliveries/retry", data={"csrf": csrf, "target": ""})
        assert bulk.status_code == 303
        progress = await http.get(bulk.headers["location"])
        assert progress.status_code == 200
        assert "Bulk retry" in progress.text

        # A message is shown in a sandboxed frame: no script, and the page's policy keeps
        # remote images out.
        sent = await http.post(
            "/api/v1/notifications/email",
            json={
                "template": "welcome",
                "to": ["ann@example.com"],
                "data": {"name": "<b>Ann</b>", "login_url": "https://example.com/a"},
            },
            headers={"X-API-Key": ADMIN},
        )
        assert sent.status_code == 202, sent.text
        shown = await http.get(f"/console/email/{sent.json()['id']}")
        assert shown.status_code == 200
        assert re.search(r"<iframe[^>]* sandbox srcdoc=", shown.text)
        assert "&lt;b&gt;Ann" in shown.text or "&amp;lt;b&amp;gt;Ann" in shown.text
