"""Notifications' wire types and vocabulary: request and response bodies, statuses."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from typing import Annotated, Any, Literal

import msgspec

from mimic.core.settings import EmailProvider

#: notifications.status (the SQL CHECK says the same; a test compares them).
NotificationStatus = Literal[
    "queued", "sending", "sent", "delivered", "bounced", "complained", "failed"
]
#: provider_credentials.provider: the providers a tenant can bring a key for.
CredentialProvider = Literal["smtp", "resend", "postmark"]


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
    provider: EmailProvider | None = None
    send_at: datetime.datetime | None = None

    def fingerprint(self) -> str:
        """Same request -> same hash, whatever the key order or `to` as a string or a list."""
        normal = msgspec.structs.replace(
            self, to=[self.to] if isinstance(self.to, str) else self.to
        )
        return hashlib.sha256(
            msgspec.json.encode(msgspec.to_builtins(normal), order="sorted")
        ).hexdigest()


#: The most messages one batch request may carry.
MAX_BATCH = 100


class BatchMessage(EmailRequest, kw_only=True, forbid_unknown_fields=True):
    """One message of a batch: a send request, with its own optional Idempotency-Key."""

    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None

    def request(self) -> EmailRequest:
        fields = msgspec.structs.asdict(self)
        del fields["idempotency_key"]
        return EmailRequest(**fields)


class BatchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[BatchMessage], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResult(msgspec.Struct, kw_only=True):
    index: int
    id: uuid.UUID
    status: NotificationStatus
    #: True when the message's idempotency_key had been used: this is the original answer.
    replayed: bool


class BatchAccepted(msgspec.Struct, kw_only=True):
    results: list[BatchResult]


class PreviewIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    locale: str | None = None


class Accepted(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: NotificationStatus


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


class Rendered(msgspec.Struct, kw_only=True, frozen=True):
    subject: str
    html: str
    text: str


class TemplateInfo(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    variables: list[str]
    locales: list[str]
    has_text_part: bool
