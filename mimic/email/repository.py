"""Reads of notifications and their timelines (``status`` is the one writer)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from mimic.core.db import Database, as_struct, as_structs, load_queries
from mimic.core.errors import NotFound
from mimic.core.pagination import after, page
from mimic.email.schemas import (
    NotificationOut,
    NotificationStatus,
    NotificationSummary,
    Page,
)

queries = load_queries("mimic.email")


class IdempotencyRecord(msgspec.Struct, frozen=True):
    id: uuid.UUID
    request_hash: str


class ProviderMessage(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: NotificationStatus
    tenant_id: str | None
    to: list[str]


async def by_idempotency_keys(
    db: Database, pairs: Sequence[tuple[str | None, str]]
) -> dict[tuple[str, str], IdempotencyRecord]:
    """The notifications these (tenant, Idempotency-Key) pairs already produced, by (tenant,
    '' for the platform; key): one query for a whole batch, none for no pair."""
    if not pairs:
        return {}
    rows = await db.fetch(
        queries["find_by_idempotency_keys"], [t or "" for t, _ in pairs], [k for _, k in pairs]
    )
    return {
        (row["tenant"], row["key"]): IdempotencyRecord(row["id"], row["request_hash"])
        for row in rows
    }


async def by_provider_message(
    db: Database, provider: str, message_id: str
) -> ProviderMessage | None:
    row = await db.fetchrow(queries["find_by_provider_message"], provider, message_id)
    return as_struct(row, ProviderMessage) if row is not None else None


async def status_of(db: Database, notification_id: uuid.UUID) -> NotificationStatus | None:
    status: NotificationStatus | None = await db.fetchval(queries["get_status"], notification_id)
    return status


async def get_notification(
    db: Database, notification_id: uuid.UUID, *, primary: Database | None = None
) -> NotificationOut:
    """``db`` may be a replica: a notification it does not have yet is read from
    ``primary``."""
    row = await db.fetchrow(queries["get_notification"], notification_id)
    if row is None and primary is not None and primary is not db:
        db = primary
        row = await db.fetchrow(queries["get_notification"], notification_id)
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    timeline = [dict(t) for t in await db.fetch(queries["get_timeline"], notification_id)]
    return as_struct({**dict(row), "timeline": timeline}, NotificationOut)


async def list_notifications(
    db: Database,
    *,
    tenant_id: str | None,
    status: NotificationStatus | None,
    to: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    since = after(cursor)
    if to is None:
        rows = await db.fetch_filtered(
            queries["list_notifications"], tenant_id, status, limit + 1, since[0], since[1]
        )
    else:
        rows = await db.fetch_filtered(
            queries["list_notifications_to"], tenant_id, status, to, limit + 1, since[0], since[1]
        )
    items, next_cursor = page(
        as_structs(rows, NotificationSummary), limit, lambda n: (n.created_at, n.id)
    )
    return Page(items=items, next_cursor=next_cursor)


async def get_body(db: Database, notification_id: uuid.UUID) -> tuple[str | None, str | None]:
    """A notification's rendered (html, text); (None, None) once purged or unknown."""
    row = await db.fetchrow(queries["get_notification_body"], notification_id)
    if row is None or row["body_purged_at"] is not None:
        return None, None
    return row["html"], row["text"]
