"""Tags cannot take over Mimic's own Postmark metadata (its duplicate check reads it)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.email.providers import OutgoingEmail
from mimic.email.providers.postmark import send_postmark
from tests.fakes import FakeHTTPServer, postmark_responder
from tests.helpers import TEST_SECRETS

KEY = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
WELCOME = {"to": "a@example.com", "template": "welcome", "data": {"name": "A", "login_url": "u"}}


@pytest.mark.parametrize("tag", ["mimic_notification_id", "MIMIC_anything"])
async def test_a_reserved_tag_is_422_and_nothing_is_stored(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, tag: str
) -> None:
    response = await client.post(
        "/api/v1/notifications/email", json={**WELCOME, "tags": {tag: "x"}}, headers=KEY
    )
    assert response.status_code == 422
    assert response.json()["error"] == "reserved_tag"
    assert tag in response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM notifications") == 0


async def test_mimic_metadata_is_written_after_the_callers_tags() -> None:
    message = OutgoingEmail(
        notification_id="n-1",
        sender="m@example.com",
        to=["a@example.com"],
        subject="s",
        html="<p>h</p>",
        text="h",
        tags={"mimic_notification_id": "forged", "plan": "pro"},
    )
    with FakeHTTPServer(postmark_responder()) as postmark:
        async with httpx.AsyncClient() as http:
            await send_postmark(
                http, base_url=postmark.url, token="pm-token", message=message, timeout=5
            )
    [request] = postmark.requests
    assert request.json()["Metadata"] == {"mimic_notification_id": "n-1", "plan": "pro"}
