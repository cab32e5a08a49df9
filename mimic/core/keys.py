"""Tenant API keys: created and revoked with ``mimic keys``, stored as a SHA-256 only.

The only module that writes ``api_keys``. A key is random (256 bits), so a plain SHA-256
is enough to store it: there is nothing to brute-force. Its id, ``key_`` and the first 12
hex digits of that hash, is how logs and the audit log name it, as for admin keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

import msgspec

from mimic.core.audit import audited
from mimic.core.db import Database, as_structs, load_queries
from mimic.core.errors import BadRequest, NotFound

#: Every tenant key starts with this, so a leaked one is easy to recognise (and to grep for).
TENANT_KEY_PREFIX = "mimic_tk_"
#: What a tenant id looks like, everywhere a tenant is named. The one definition.
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TENANT_ID_RULE = "tenant_id must be 1-64 characters of letters, digits, '_', '.', '-'"

queries = load_queries("mimic.core")


class TenantKey(msgspec.Struct, kw_only=True):
    id: str
    tenant_id: str
    name: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def check_tenant(tenant_id: str) -> str:
    if not TENANT_ID.match(tenant_id):
        raise BadRequest(TENANT_ID_RULE, code="invalid_tenant")
    return tenant_id


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """How logs and the audit log name a key: a fingerprint, never the key itself."""
    return "key_" + key_hash(key).hex()[:12]


async def create_key(db: Database, tenant_id: str, name: str = "", *, by: str) -> tuple[str, str]:
    """A new key for ``tenant_id``: returns (id, key). The key is never stored or shown again;
    the audit log names it by its id (a refused creation, by the error code)."""
    async with audited(db, by, "create_key", []) as entry:
        entry.detail["tenant_id"] = tenant_id
        check_tenant(tenant_id)
        key = TENANT_KEY_PREFIX + secrets.token_urlsafe(32)
        kid = key_id(key)
        entry.targets = [kid]
        async with db.transaction() as conn:
            await conn.execute(
                queries["insert_api_key"],
                kid,
                key_hash(key),
                tenant_id,
                name,
            )
    return kid, key


async def list_keys(db: Database, tenant_id: str | None = None) -> list[TenantKey]:
    rows = await db.fetch(queries["list_api_keys"], tenant_id)
    return as_structs(rows, TenantKey)


async def revoke_key(db: Database, kid: str, *, by: str) -> None:
    """Revoke at once: the next request with the key is refused."""
    async with audited(db, by, "revoke_key", [kid]) as entry:
        tenant: str | None = await db.fetchval(queries["revoke_api_key"], kid)
        if tenant is None:
            raise NotFound(f"no key {kid!r}; `mimic keys list` shows the ids", code="key_not_found")
        entry.detail["tenant_id"] = tenant


async def tenant_of(db: Database, key: str) -> str | None:
    """The tenant a live key acts for, or None (unknown or revoked)."""
    if not key.startswith(TENANT_KEY_PREFIX):
        return None
    found: str | None = await db.fetchval(queries["tenant_of_key"], key_hash(key))
    return found
