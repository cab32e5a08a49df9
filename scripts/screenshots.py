"""Screenshots of the console for the README, taken from a running `make run`.

    make run                                   # in another terminal
    uv run --frozen python scripts/screenshots.py [--url http://127.0.0.1:8006]

It sends the README's test event (so there is something to show), signs in with the dev key,
and writes docs/images/console-overview.png and docs/images/console-event.png. It needs a
Chromium (`make browser`); Playwright drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil

import httpx
from playwright.async_api import async_playwright

OUT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images"
EVENT = {
    "type": "checkout.session.completed",
    "data": {
        "object": {
            "customer": "cus_123",
            "customer_email": "user@example.com",
            "subscription": "sub_123",
            "metadata": {"product_type": "pro"},
        }
    },
}


async def main(url: str, key: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        sent = await http.post("/api/v1/gateway/webhooks/stripe/test", json=EVENT)
        sent.raise_for_status()
        event_id = sent.json()["event_id"]
    await asyncio.sleep(2)  # the worker delivers it to the inkpass stand-in
    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no Chromium: run `make browser` (or set CHROMIUM_PATH)")
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, args=["--headless=new", "--no-sandbox"]
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{url}/console/login")
        await page.get_by_label("Admin API key").fill(key)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{url}/console")
        await page.screenshot(path=str(OUT / "console-overview.png"), full_page=True)
        await page.goto(f"{url}/console/events/{event_id}")
        await page.screenshot(path=str(OUT / "console-event.png"), full_page=True)
        await browser.close()
    print(f"wrote {OUT / 'console-overview.png'} and {OUT / 'console-event.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8006")
    parser.add_argument("--key", default=os.environ.get("MIMIC_API_KEY", "mimic-dev-key"))
    args = parser.parse_args()
    asyncio.run(main(args.url, args.key))
