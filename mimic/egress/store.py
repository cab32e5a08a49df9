"""Notifications: request validation, idempotent creation with its send job, reads."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import uuid
from typing import Any, Literal

import msgspec

from mimic.db import Database, load_queries
from mimic.egress.addresses import validate_address, validate_addresses
from mimic.egress.templates import Rendered
from mimic.errors import BadRequest, Conflict, NotFound, Unprocessable
from mimic.jobs import QUEUE_EMAIL, JobToDefer, defer_jobs

queries = load_queries("mimic.egress")

SEND_TASK = "mimic.tasks.send_email"
MAX_RECIPIENTS = 50
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Provider = Literal["dev", "smtp", "resend", "postmark"]
Status = Literal["queued", "sending", "sent", "delivered", "bounced", "complained", "failed"]


def check_tenant(tenant_id: str) -> str:
    if not _TENANT.match(tenant_id):
        raise BadRequest(
            "tenant_id must be 1-64 characters of letters, digits, '_', '.', '-'",
            code="invalid_tenant",
        )
    return tenant_id


class EmailRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    to: str | list[str]
    template: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    locale: str | None = None
    tenant_id: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")
    reply_to: str | None = None
    cc: list[str] = msgspec.field(default_factory=list)
    bcc: list[str] = msgspec.field(default_factory=list)
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    provider: Provider | None = None
    send_at: datetime.datetime | None = None

    def fingerprint(self) -> str:
        """Same request -> same hash, whatever the key order or `to` as a string or a list."""
        normal = msgspec.structs.replace(
            self, to=[self.to] if isinstance(self.to, str) else self.to
        )
        return hashlib.sha256(
            msgspec.json.encode(msgspec.to_builtins(normal), order="sorted")
        ).hexdigest()


class Accepted(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: Status


class TimelineEntry(msgspec.Struct, kw_only=True):
    status: str
    detail: str | None
    occurred_at: datetime.datetime


class NotificationOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    tenant_id: str | None
    template: str
    locale: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    sender: str = msgspec.field(name="from")
    subject: str
    provider: str
    provider_message_id: str | None
    status: str
    error: str | None
    attempts: int
    send_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    sent_at: datetime.datetime | None
    timeline: list[TimelineEntry]


class NotificationSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    tenant_id: str | None
    template: str
    to: list[str]
    subject: str
    provider: str
    provider_message_id: str | None
    status: str
    error: str | None
    attempts: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    sent_at: datetime.datetime | None


class Page(msgspec.Struct, kw_only=True):
    items: list[NotificationSummary]
    next_cursor: str | None


class Recipients(msgspec.Struct, kw_only=True, frozen=True):
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    sender: str | None


def check_recipients(request: EmailRequest) -> Recipients:
    to = [request.to] if isinstance(request.to, str) else request.to
    if not to:
        raise Unprocessable("to: at least one recipient is required", code="invalid_address")
    total = len(to) + len(request.cc) + len(request.bcc)
    if len(to) > MAX_RECIPIENTS or total > MAX_RECIPIENTS:
        raise Unprocessable(
            f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)",
            code="too_many_recipients",
        )
    return Recipients(
        to=validate_addresses(to, "to"),
        cc=validate_addresses(request.cc, "cc"),
        bcc=validate_addresses(request.bcc, "bcc"),
        reply_to=validate_address(request.reply_to, "reply_to") if request.reply_to else None,
        sender=validate_address(request.sender, "from") if request.sender else None,
    )


async def replay(
    db: Database, tenant_id: str | None, key: str, fingerprint: str
) -> Accepted | None:
    """The original answer for a reused Idempotency-Key; 409 if the body differs."""
    row = await db.fetchrow(queries["find_by_idempotency_key"], tenant_id, key)
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return Accepted(id=row["id"], status="queued")


async def create_notification(
    db: Database,
    *,
    request: EmailRequest,
    recipients: Recipients,
    rendered: Rendered,
    sender: str,
    provider: Provider,
    idempotency_key: str | None,
) -> tuple[Accepted, bool]:
    """Store the notification and defer its send in one transaction.

    Returns the response and whether it is a replay of an earlier request (the caller checks
    for one first; this catches a concurrent request with the same key).
    """
    fingerprint = request.fingerprint()
    notification_id = uuid.uuid4()
    async with db.transaction() as conn:
        inserted = await conn.fetchval(
            queries["insert_notification"],
            notification_id,
            request.tenant_id,
            request.template,
            request.locale,
            recipients.to,
            recipients.cc,
            recipients.bcc,
            recipients.reply_to,
            sender,
            rendered.subject,
            rendered.html,
            rendered.text,
            json.dumps(request.tags),
            provider,
            idempotency_key,
            fingerprint,
            request.send_at,
        )
        if inserted is not None:
            await conn.execute(queries["add_timeline"], notification_id, "queued", None, None, None)
            await defer_jobs(
                conn,
                [
                    JobToDefer(
                        task_name=SEND_TASK,
                        queue=QUEUE_EMAIL,
                        args={"notification_id": str(notification_id)},
                        scheduled_at=request.send_at,
                    )
                ],
            )
    if inserted is None:
        # A concurrent request with the same key committed first.
        assert idempotency_key is not None
        earlier = await replay(db, request.tenant_id, idempotency_key, fingerprint)
        assert earlier is not None
        return earlier, True
    return Accepted(id=notification_id, status="queued"), False


async def get_notification(db: Database, notification_id: uuid.UUID) -> NotificationOut:
    row = await db.fetchrow(queries["get_notification"], notification_id)
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    timeline = await db.fetch(queries["get_timeline"], notification_id)
    fields = dict(row)
    fields["sender"] = fields.pop("from")
    return NotificationOut(**fields, timeline=[TimelineEntry(**dict(t)) for t in timeline])


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
    status: str | None,
    to: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    after = decode_cursor(cursor) if cursor else (None, None)
    rows = await db.fetch(
        queries["list_notifications"], tenant_id, status, to, limit + 1, after[0], after[1]
    )
    items = [NotificationSummary(**dict(r)) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)
