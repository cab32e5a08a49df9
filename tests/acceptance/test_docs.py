"""/docs works without internet: the Swagger UI comes from an installed package, and it
renders (and sends the documented example) in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse

import asyncpg
import httpx
import pytest

from mimic.core.settings import Settings
from tests.helpers import TEST_SECRETS, live_api

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


async def test_the_docs_page_names_no_other_host(settings: Settings) -> None:
    async with live_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        referenced = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert referenced, page.text
        for ref in referenced:
            assert urllib.parse.urlsplit(ref).netloc == "", ref  # same origin only
            asset = await http.get(ref)
            assert asset.status_code == 200, ref
            assert len(asset.content) > 100, ref


@pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium installed (apt-get install chromium; .ci/run installs it)",
)
async def test_the_docs_render_offline_and_the_send_example_works(
    settings: Settings, db: asyncpg.Connection
) -> None:
    from playwright.async_api import async_playwright

    async with live_api(settings) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        elsewhere: list[str] = []

        async def same_origin_only(route, request) -> None:  # type: ignore[no-untyped-def]
            if request.url.startswith(url):
                await route.continue_()
            else:  # no network: anything else would fail for a user without internet
                elsewhere.append(request.url)
                await route.abort()

        await page.route("**/*", same_origin_only)
        await page.goto(f"{url}/docs")
        await page.wait_for_selector(".opblock", timeout=20_000)
        assert await page.locator(".opblock").count() >= 20
        for tag in ("webhooks", "gateway admin", "notifications", "byok", "operations"):
            assert await page.locator(f".opblock-tag[data-tag='{tag}']").count() == 1, tag

        # Authorize with the API key, then try the send example as a newcomer would.
        await page.click("button.authorize")
        await page.locator(".auth-container input").first.fill(TEST_SECRETS["MIMIC_API_KEYS"])
        await page.locator(".auth-container button.authorize").first.click()
        await page.click("button.close-modal")
        send = page.locator("#operations-notifications-ApiV1NotificationsEmailSendEmail")
        await send.locator(".opblock-summary").click()
        await send.locator("button.try-out__btn").click()
        await send.locator("button.execute").click()
        status = send.locator(".live-responses-table tr.response .response-col_status").first
        await status.wait_for(timeout=20_000)
        assert (await status.inner_text()).strip() == "202"
        await browser.close()
    assert elsewhere == []
    assert await db.fetchval("SELECT template FROM notifications") == "welcome"
