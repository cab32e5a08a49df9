"""A batch is checked set-wise: a few queries for all its messages (the reused keys, the
sender policies, the suppressed recipients, the quota), not a few per message, with the same
answers a message would get alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import Connection
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.settings import Settings
from tests.helpers import ADMIN, new_key

SEND = "/api/v1/notifications/email"
BATCH = "/api/v1/notifications/email/batch"


def message(to: str, **extra: Any) -> dict[str, Any]:
    return {
        "to": to,
        "template": "welcome",
        "data": {"name": "A", "login_url": "https://example.com/login"},
        **extra,
    }


@contextlib.contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Every statement any asyncpg connection of this process sends meanwhile (a prepared
    statement through ``_execute``, or a bare one such as BEGIN through ``execute``), as
    whether it ran inside a transaction."""
    seen: list[bool] = []
    execute, run = Connection.execute, Connection._execute  # type: ignore[attr-defined]

    async def counted_execute(self: Connection, query: str, *args: Any, **kw: Any) -> Any:
        if not args:
            seen.append(self.is_in_transaction())
        return await execute(self, query, *args, **kw)

    async def counted_run(self: Connection, *args: Any, **kw: Any) -> Any:
        seen.append(self.is_in_transaction())
        return await run(self, *args, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(Connection, "execute", counted_execute)
        patch.setattr(Connection, "_execute", counted_run)
        yield seen


async def test_checking_a_batch_costs_the_same_few_queries_for_1_or_100_messages(
    client: AsyncTestClient[Litestar], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted outside the storing transaction (``status.create_many``'s, which writes each
    notification, its recipients and its first timeline line), for a tenant key's batch
    whose every message has a key and two recipients, for a tenant with a quota: the key
    lookup, the rate-limit token, one query each for the reused keys, the policies, the
    suppressed recipients and the quota, and the BEGIN (1 + 1 + 4 + 1; it was 203 for 100
    messages before: two queries per message). Fresh sends, then the same batch replayed."""
    key = {"X-API-Key": await new_key(settings, "acme")}
    quota = {"sender_domains": [], "platform_fallback": True, "daily_send_quota": 1000}
    response = await client.put("/api/v1/tenants/acme/settings", json=quota, headers=ADMIN)
    assert response.status_code == 200
    counts: dict[tuple[int, str], int] = {}
    for size in (1, 100):
        body = {
            "messages": [
                message(
                    f"u{i}@example.com", cc=[f"c{i}@example.com"], idempotency_key=f"k{size}-{i}"
                )
                for i in range(size)
            ]
        }
        for attempt in ("new", "replay"):
            with statements(monkeypatch) as seen:
                response = await client.post(BATCH, json=body, headers=key)
            assert response.status_code == 202, response.text
            assert all(r["replayed"] == (attempt == "replay") for r in response.json()["results"])
            counts[size, attempt] = seen.count(False)
    assert counts[1, "new"] == 7, counts
    assert counts[100, "new"] == counts[1, "new"], counts
    # A replay reads the keys, and nothing else: no policy, suppression or quota read.
    assert counts[100, "replay"] == counts[1, "replay"] == 3, counts


async def test_each_message_gets_the_answer_it_would_get_alone(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    """One batch of messages that each fail a different check (or none), in an order where
    a set-wise read could mix them up: the batch names each failing message with the code
    it gets when sent alone, and stores nothing."""
    acme = {"X-API-Key": await new_key(settings, "acme")}
    for address in ("gone@example.com", "cc.gone@Example.COM"):
        added = await client.post("/api/v1/suppressions", json={"email": address}, headers=acme)
        assert added.status_code == 201
    # Suppressed for globex only: acme may still mail it.
    await client.post(
        "/api/v1/suppressions",
        json={"email": "g@example.com", "tenant_id": "globex"},
        headers=ADMIN,
    )
    for to, key in (("first@example.com", "used"), ("second@example.com", "again")):
        earlier = await client.post(
            SEND, json=message(to), headers={**acme, "Idempotency-Key": key}
        )
        assert earlier.status_code == 202
    messages = [
        message("ok@example.com"),
        message("gone@example.com"),  # suppressed
        message("other@example.com", idempotency_key="used"),  # key reused, other body
        message("first@example.com", idempotency_key="new", template="nope"),
        message("x@example.com", cc=["cc.gone@EXAMPLE.com"]),  # suppressed (cc, normalized)
        message("g@example.com"),  # globex's suppression, not acme's
        message("z@example.com", **{"from": "boss@platform.example"}),  # not acme's domain
        message("second@example.com", idempotency_key="again"),  # a replay: fine
        message("bad address"),
        message("t@example.com", tags={"mimic_x": "1"}),
    ]
    alone = []
    for one in messages:
        body = {k: v for k, v in one.items() if k != "idempotency_key"}
        headers = (
            {**acme, "Idempotency-Key": one["idempotency_key"]}
            if "idempotency_key" in one
            else acme
        )
        response = await client.post(SEND, json=body, headers=headers)
        alone.append(response.json()["error"] if response.status_code >= 400 else None)
    assert alone == [
        None,
        "recipient_suppressed",
        "idempotency_key_reused",
        "unknown_template",
        "recipient_suppressed",
        None,
        "sender_not_allowed",
        None,
        "invalid_address",
        "reserved_tag",
    ]
    before = await db.fetchval("SELECT count(*) FROM notifications")
    refused = await client.post(BATCH, json={"messages": messages}, headers=acme)
    assert refused.status_code == 422  # the first failing message's
    assert refused.json()["error"] == "recipient_suppressed"
    detail = refused.json()["detail"]
    for index, code in enumerate(alone):
        if code is None:
            assert f"messages[{index}]: " not in detail, (index, detail)
        else:
            assert f"messages[{index}]: {code}: " in detail, (index, detail)
    assert "suppressed recipient(s): gone@example.com (" in detail
    assert "suppressed recipient(s): cc.gone@example.com (" in detail
    assert await db.fetchval("SELECT count(*) FROM notifications") == before
