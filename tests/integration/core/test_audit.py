"""The audit log records who did what: tenant keys made and revoked, a tenant key refused
another tenant's credential. Keys are named by their id, never by their value."""

from __future__ import annotations

import json

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.deps import open_deps
from mimic.core.errors import BadRequest, NotFound
from mimic.core.keys import create_key, key_id, revoke_key
from mimic.core.settings import Settings
from tests.helpers import new_key


async def audit_rows(db: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await db.fetch(
        "SELECT key_id, action, target_ids, outcome, detail FROM audit_log ORDER BY id"
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


async def test_tenant_keys_made_and_revoked_are_audited_by_id(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with open_deps(settings) as deps:
        kid, key = await create_key(deps.db, "acme", "backend", by="cli:ops")
        await revoke_key(deps.db, kid, by="cli:ops")
        with pytest.raises(NotFound):
            await revoke_key(deps.db, "key_000000000000", by="cli:ops")
        with pytest.raises(BadRequest):
            await create_key(deps.db, "not a tenant!", by="cli:ops")
    assert kid == key_id(key)
    rows = await audit_rows(db)
    assert rows == [
        {
            "key_id": "cli:ops",
            "action": "create_key",
            "target_ids": [kid],
            "outcome": "ok",
            "detail": {"tenant_id": "acme"},
        },
        {
            "key_id": "cli:ops",
            "action": "revoke_key",
            "target_ids": [kid],
            "outcome": "ok",
            "detail": {"tenant_id": "acme"},
        },
        {
            "key_id": "cli:ops",
            "action": "revoke_key",
            "target_ids": ["key_000000000000"],
            "outcome": "key_not_found",
            "detail": {},
        },
        {
            "key_id": "cli:ops",
            "action": "create_key",
            "target_ids": [],
            "outcome": "invalid_tenant",
            "detail": {"tenant_id": "not a tenant!"},
        },
    ]
    assert key not in str(rows)
    assert key.removeprefix("mimic_tk_") not in str(rows)


async def test_a_tenant_key_refused_another_tenants_credential_is_audited(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    acme = {"X-API-Key": await new_key(settings, "acme")}
    refused = await client.get("/api/v1/tenants/globex/credentials/resend", headers=acme)
    assert refused.status_code == 403
    assert refused.json()["error"] == "tenant_mismatch"
    [row] = [r for r in await audit_rows(db) if r["action"] == "read_credential"]
    assert row["key_id"] == key_id(acme["X-API-Key"])
    assert row["target_ids"] == ["globex/resend"]
    assert row["outcome"] == "tenant_mismatch"
    assert acme["X-API-Key"] not in str(row)
