"""The suppression list: addresses a tenant no longer mails. The only module that writes
``suppressions``.

An address is added when a provider reports a hard bounce, a spam complaint or its own
suppression, or when Postmark refuses an inactive recipient (406); an operator can add or
remove one by hand. Each tenant has its own list (the platform's tenant is ``""``). Addresses
compare exactly on the local part and case-insensitively on the domain.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from mimic.core import metrics
from mimic.core.db import Database, as_structs
from mimic.core.errors import Conflict, NotFound, Unprocessable
from mimic.core.keys import check_tenant
from mimic.core.pagination import decode_text_cursor, page
from mimic.email.addresses import validate_address
from mimic.email.repository import queries

logger = logging.getLogger(__name__)

#: Why an address is suppressed. The one definition (the SQL CHECK matches it).
SuppressionReason = Literal[
    "hard_bounce", "complaint", "provider_suppressed", "inactive_recipient", "manual"
]
#: The platform's own list (notifications without a tenant).
PLATFORM = ""


class Suppression(msgspec.Struct, kw_only=True):
    tenant_id: str | None
    email: str
    reason: SuppressionReason
    provider: str | None
    notification_id: uuid.UUID | None
    detail: str | None
    created_at: datetime.datetime


class SuppressionPage(msgspec.Struct, kw_only=True):
    items: list[Suppression]
    next_cursor: str | None


def normalize(address: str) -> str:
    """``Name <Local@Example.COM>`` -> ``Local@example.com``."""
    _, bare = email.utils.parseaddr(address)
    local, sep, domain = (bare or address).rpartition("@")
    return f"{local}@{domain.lower()}" if sep else (bare or address)


def _tenant(tenant_id: str | None) -> str:
    return tenant_id if tenant_id is not None else PLATFORM


async def suppressed_among(
    db: Database, sends: Sequence[tuple[str | None, Iterable[str]]]
) -> list[list[str]]:
    """For each send (tenant, addresses), which of its addresses its tenant has suppressed
    (normalized, in address order): one query for a whole batch, none for no address."""
    wanted = [(_tenant(tenant), {normalize(a) for a in addresses}) for tenant, addresses in sends]
    pairs = sorted({(tenant, address) for tenant, addresses in wanted for address in addresses})
    if not pairs:
        return [[] for _ in sends]
    rows = await db.fetch(queries["suppressed_pairs"], [t for t, _ in pairs], [a for _, a in pairs])
    found: dict[str, list[str]] = {}
    for row in rows:  # in the database's address order
        found.setdefault(row["tenant"], []).append(row["address"])
    return [
        [address for address in found.get(tenant, []) if address in addresses]
        for tenant, addresses in wanted
    ]


def refuse_suppressed(found: Sequence[str]) -> None:
    """422 recipient_suppressed naming the addresses (a send's ``suppressed_among``), when
    there are any."""
    if found:
        metrics.sends_refused.labels("suppressed").inc()
        raise Unprocessable(
            "suppressed recipient(s): "
            + ", ".join(found)
            + " (remove them from the request, or from the suppression list, and retry)",
            code="recipient_suppressed",
        )


async def add(
    db: Database,
    tenant_id: str | None,
    addresses: Iterable[str],
    *,
    reason: SuppressionReason,
    provider: str | None = None,
    notification_id: uuid.UUID | None = None,
    detail: str | None = None,
) -> int:
    """Suppress the addresses; a complaint is never downgraded by a later bounce.
    Returns how many rows were added or changed."""
    normalized = sorted({normalize(a) for a in addresses})
    if not normalized:
        return 0
    rows = await db.fetch(
        queries["add_suppressions"],
        _tenant(tenant_id),
        normalized,
        reason,
        provider,
        notification_id,
        detail[:500] if detail else None,
    )
    if rows:
        metrics.suppressions_added.labels(reason).inc(len(rows))
        logger.info(
            "suppressed %d address(es) for tenant %r: %s", len(rows), _tenant(tenant_id), reason
        )
    return len(rows)


async def remove(db: Database, tenant_id: str | None, address: str, *, force: bool) -> Suppression:
    """Take an address off the list. A complaint needs ``force`` (the recipient asked)."""
    normalized = normalize(address)
    async with db.transaction() as conn:
        row = await conn.fetchrow(queries["lock_suppression"], _tenant(tenant_id), normalized)
        if row is None:
            raise NotFound(f"{normalized} is not suppressed for this tenant")
        if row["reason"] == "complaint" and not force:
            raise Conflict(
                f"{normalized} complained about this sender's mail; removing it needs force=true",
                code="complaint_needs_force",
            )
        await conn.execute(queries["delete_suppression"], _tenant(tenant_id), normalized)
    return msgspec.convert(dict(row), Suppression)


async def list_page(
    db: Database,
    tenant_id: str | None,
    *,
    email_filter: str | None,
    limit: int,
    cursor: str | None,
) -> SuppressionPage:
    since = decode_text_cursor(cursor) if cursor else (None, None)
    rows = await db.fetch(
        queries["list_suppressions"],
        _tenant(tenant_id),
        normalize(email_filter) if email_filter else None,
        limit + 1,
        since[0],
        since[1],
    )
    found = as_structs(rows, Suppression)
    items, next_cursor = page(found, limit, lambda s: (s.created_at, s.email))
    return SuppressionPage(items=items, next_cursor=next_cursor)


async def add_by_hand(
    db: Database, tenant_id: str | None, email: str, detail: str | None
) -> Suppression:
    """An operator suppresses an address (reason ``manual``): the admin API's and the
    console's one path. Returns the entry."""
    if tenant_id is not None:
        check_tenant(tenant_id)
    address = validate_address(email, "email")
    await add(db, tenant_id, [address], reason="manual", detail=detail or "added by hand")
    found = await list_page(db, tenant_id, email_filter=address, limit=1, cursor=None)
    return found.items[0]
