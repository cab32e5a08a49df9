"""Reads of notifications and their timelines (``status`` is the one writer)."""

from __future__ import annotations

import base64
import datetime
import uuid

import msgspec

from mimic.core.db import Database, as_struct, as_structs, load_queries
from mimic.core.errors import BadRequest, NotFound
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


async def by_idempotency_key(
    db: Database, tenant_id: str | None, key: str
) -> IdempotencyRecord | None:
    row = await db.fetchrow(queries["find_by_idempotency_key"], tenant_id, key)
    return as_struct(row, IdempotencyRecord) if row is not None else None


async def by_provider_message(
    db: Database, provider: str, message_id: str
) -> ProviderMessage | None:
    row = await db.fetchrow(queries["find_by_provider_message"], provider, message_id)
    return as_struct(row, ProviderMessage) if row is not None else None


async def status_of(db: Database, notification_id: uuid.UUID) -> NotificationStatus | None:
    status: NotificationStatus | None = await db.fetchval(queries["get_status"], notification_id)
    return status


async def get_notification(db: Database, notification_id: uuid.UUID) -> NotificationOut:
    row = await db.fetchrow(queries["get_notification"], notification_id)
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    timeline = [dict(t) for t in await db.fetch(queries["get_timeline"], notification_id)]
    return as_struct({**dict(row), "timeline": timeline}, NotificationOut)


def encode_cursor(created_at: datetime.datetime, notification_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{notification_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        return datetime.datetime.fromisoformat(when), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API returned", code="invalid_cursor") from None


async def list_notifications(
    db: Database,
    *,
    tenant_id: str | None,
    status: NotificationStatus | None,
    to: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    after = decode_cursor(cursor) if cursor else (None, None)
    rows = await db.fetch(
        queries["list_notifications"], tenant_id, status, to, limit + 1, after[0], after[1]
    )
    items = as_structs(rows[:limit], NotificationSummary)
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)
