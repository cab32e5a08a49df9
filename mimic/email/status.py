"""A notification's lifecycle: the only module that writes ``notifications`` and its timeline.

queued -> sending -> sent -> delivered, or -> bounced | complained | failed. A send attempt
that fails goes back to queued (to retry) or to failed; provider events only move a status
forward (``RANK``), never back.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from mimic.core.batching import GroupCommit, group_commit
from mimic.core.db import Connection, Database, as_struct
from mimic.core.jobs import QUEUE_EMAIL, JobToDefer, defer_jobs
from mimic.core.settings import EmailProvider
from mimic.email.repository import queries
from mimic.email.schemas import EmailRequest, NotificationStatus, Recipients, Rendered

SEND_TASK = "mimic.tasks.send_email"
#: One job for several notifications stored together (a group commit's, or a batch's).
SEND_GROUP_TASK = "mimic.tasks.send_emails"

#: How far along a status is; a provider event moves a notification only to a higher rank.
RANK: dict[NotificationStatus, int] = {
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "bounced": 4,
    "complained": 4,
    "failed": 4,
}
FAILURES: tuple[NotificationStatus, ...] = ("bounced", "complained", "failed")


class Claimed(msgspec.Struct, kw_only=True, frozen=True):
    """A notification taken for one send attempt."""

    id: uuid.UUID
    tenant_id: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    sender: str = msgspec.field(name="from")
    subject: str
    html: str
    text: str
    tags: str
    provider: EmailProvider
    attempts: int
    #: The failover order chosen at submit (the first is ``provider`` unless pinned).
    providers: list[EmailProvider]
    #: An earlier attempt through ``provider`` may have been sent: ask it alone again.
    provider_pinned: bool
    #: May go through the platform's account should the tenant's credential be gone.
    platform_allowed: bool = True

    def tag_dict(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in json.loads(self.tags).items()}


class NewNotification(msgspec.Struct, kw_only=True, frozen=True):
    """One validated, rendered send, ready to store."""

    request: EmailRequest
    recipients: Recipients
    rendered: Rendered
    sender: str
    provider: EmailProvider
    idempotency_key: str | None
    #: Failover order; the first is ``provider``.
    providers: list[EmailProvider] = msgspec.field(default_factory=list)
    #: False for a tenant-key send accepted for the tenant's own credentials: it is never
    #: sent through the platform's account, even if the credential is deleted meanwhile.
    platform_allowed: bool = True


async def create_many(db: Database, batch: list[NewNotification]) -> list[uuid.UUID | None]:
    """Store every notification and defer every send in one transaction (all or nothing).

    An entry is None when its tenant's Idempotency-Key was taken by a concurrent request."""
    ids: list[uuid.UUID | None] = [None] * len(batch)
    # In idempotency-key order, so two commits holding the same keys cannot deadlock.
    order = sorted(
        range(len(batch)),
        key=lambda i: (batch[i].request.tenant_id or "", batch[i].idempotency_key or ""),
    )
    async with db.transaction() as conn:
        for index in order:
            new = batch[index]
            notification_id = uuid.uuid4()
            request, recipients, rendered = new.request, new.recipients, new.rendered
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
                new.sender,
                rendered.subject,
                rendered.html,
                rendered.text,
                json.dumps(request.tags),
                new.provider,
                new.idempotency_key,
                request.fingerprint(),
                request.send_at,
                new.providers or [new.provider],
                new.platform_allowed,
            )
            if inserted is None:
                continue
            await conn.execute(queries["add_recipients"], notification_id)
            await _timeline(conn, notification_id, "queued", None)
            ids[index] = notification_id
        by_time: dict[tuple[datetime.datetime | None, str | None], list[uuid.UUID]] = {}
        for created, new in zip(ids, batch, strict=True):
            if created is not None:
                key = (new.request.send_at, new.request.tenant_id)
                by_time.setdefault(key, []).append(created)
        await _defer_sends(
            conn, [Sends(when, members, tenant) for (when, tenant), members in by_time.items()]
        )
    return ids


class Sends(NamedTuple):
    """Sends for one job: due then, all of one tenant (its share of the worker's slots is
    counted per job), and ``turn``: the send-rate key whose token the send already holds."""

    when: datetime.datetime | None
    members: list[uuid.UUID]
    tenant_id: str | None = None
    turn: str | None = None


def _job(sends: Sends) -> JobToDefer:
    """``send_email`` for a lone notification, ``send_emails`` for several (one job's fetch
    and finish shared by all)."""
    args: dict[str, object] = (
        {"notification_id": str(sends.members[0])}
        if len(sends.members) == 1
        else {"notification_ids": [str(m) for m in sends.members]}
    )
    if sends.tenant_id is not None:
        args["tenant_id"] = sends.tenant_id
    if sends.turn is not None:
        args["turn"] = sends.turn
    task = SEND_TASK if len(sends.members) == 1 else SEND_GROUP_TASK
    return JobToDefer(task_name=task, queue=QUEUE_EMAIL, args=args, scheduled_at=sends.when)


async def _defer_sends(conn: Connection, groups: list[Sends]) -> list[int]:
    """One job per group of sends; each row records the job that now owns its send. Returns
    the job ids."""
    if not groups:
        return []
    job_ids = await defer_jobs(conn, [_job(sends) for sends in groups])
    owners = [(m, job) for sends, job in zip(groups, job_ids, strict=True) for m in sends.members]
    await conn.execute(queries["set_jobs"], [m for m, _ in owners], [j for _, j in owners])
    return job_ids


#: Group commits of the send path (they label mimic_group_commit_size): the claims, and the
#: sent records, of sends running at once in one worker are written together.
CLAIMS, SENT = "email_claims", "email_sent"


async def claim(db: Database, notification_id: uuid.UUID, job_id: int | None) -> Claimed | None:
    """queued/sending/failed -> sending, counting the attempt, if job ``job_id`` owns the
    send; None if there is nothing for this job to send. Claims made while another is being
    written are written together, in one statement (``core.batching``)."""
    writer: GroupCommit[tuple[uuid.UUID, int | None], Claimed | None]
    writer = group_commit(db, CLAIMS, functools.partial(_claim_many, db))
    return await writer.submit((notification_id, job_id))


async def _claim_many(
    db: Database, items: Sequence[tuple[uuid.UUID, int | None]]
) -> list[Claimed | Exception | None]:
    # In id order, so that two overlapping statements lock their rows in the same order.
    ordered = sorted(set(items), key=lambda item: (item[0], item[1] or 0))
    async with db.pinned(CLAIMS) as conn:
        rows = await conn.fetch(
            queries["claim_sends"], [nid for nid, _ in ordered], [job for _, job in ordered]
        )
    # Keyed by the pair that claimed the row: only the asker whose job owns it gets it, and
    # should the same pair ask twice, only the first (pop).
    claimed: dict[tuple[uuid.UUID, int | None], Claimed | Exception] = {}
    for row in rows:
        try:
            claimed[(row["id"], row["claimed_by"])] = as_struct(row, Claimed)
        except Exception as exc:  # committed, but this row cannot be read: its caller alone
            claimed[(row["id"], row["claimed_by"])] = exc
    return [claimed.pop(item, None) for item in items]


class SentRecord(NamedTuple):
    notification_id: uuid.UUID
    message_id: str
    provider: EmailProvider
    detail: str


async def mark_sent(
    db: Database,
    notification_id: uuid.UUID,
    message_id: str,
    detail: str,
    *,
    provider: EmailProvider,
) -> None:
    """sending -> sent through ``provider`` (unless a provider event has moved it on).
    Written together with the other sends that finish meanwhile (``core.batching``)."""
    writer = group_commit(db, SENT, functools.partial(_mark_sent_many, db))
    await writer.submit(SentRecord(notification_id, message_id, provider, detail))


async def _mark_sent_many(db: Database, records: Sequence[SentRecord]) -> list[None]:
    # In id order, so that two overlapping statements lock their rows in the same order.
    columns = list(zip(*sorted(records), strict=True))
    async with db.pinned(SENT) as conn:
        await conn.execute(queries["mark_sent"], *(list(c) for c in columns))
    return [None] * len(records)


async def mark_unsent(
    db: Database,
    notification_id: uuid.UUID,
    *,
    retrying: bool,
    reason: str,
    provider: EmailProvider | None = None,
    pinned: bool = False,
    release: bool = False,
) -> None:
    """sending -> queued (to retry) or failed, with the reason. ``provider`` and ``pinned``:
    where the retry starts (None keeps the current provider), and whether it may ask that
    provider alone (an unknown outcome: never another, no double send). ``release``: no job
    owns the send any more (a shared job's send that failed for good: the shared job may run
    again for its other sends, and must not send this one again)."""
    async with db.transaction() as conn:
        await _unsent(conn, notification_id, retrying, reason, provider, pinned, release)


async def _unsent(
    conn: Connection,
    notification_id: uuid.UUID,
    retrying: bool,
    reason: str,
    provider: EmailProvider | None,
    pinned: bool,
    release: bool,
) -> bool:
    """The row and its timeline line; False when the row had moved on (not `sending`)."""
    new_status: NotificationStatus = "queued" if retrying else "failed"
    changed = await conn.execute(
        queries["mark_unsent"], notification_id, new_status, reason, provider, pinned, release
    )
    if changed == "UPDATE 0":
        return False
    await _timeline(conn, notification_id, "retrying" if retrying else "failed", reason)
    return True


async def retry_in_own_job(
    db: Database,
    notification_id: uuid.UUID,
    *,
    reason: str,
    provider: EmailProvider | None,
    pinned: bool,
    delay: float,
    tenant_id: str | None,
) -> int | None:
    """A send of a group to retry: back to queued (as ``mark_unsent``) and, in the same
    transaction, a ``send_email`` job of its own, due in ``delay`` seconds, that now owns it
    (the group's job will not claim it again). Returns the new job's id (None: the row had
    moved on)."""
    async with db.transaction() as conn:
        if not await _unsent(conn, notification_id, True, reason, provider, pinned, False):
            return None
        (job_id,) = await _defer_sends(conn, [Sends(_due(delay), [notification_id], tenant_id)])
        return job_id


def _due(delay: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)


async def wait_for_turn(
    db: Database, notification_id: uuid.UUID, *, turn: str, delay: float, tenant_id: str | None
) -> int | None:
    """A claimed send whose send-rate turn (taken from bucket ``turn``) is ``delay`` seconds
    away: back to queued, the attempt not counted, and a job of its own due at its turn that
    owns it and uses that turn (no second token). No worker slot waits meanwhile. Returns the
    new job's id (None: the row had moved on)."""
    due = _due(delay)
    async with db.transaction() as conn:
        if await conn.execute(queries["unclaim_send"], notification_id) == "UPDATE 0":
            return None
        await _timeline(conn, notification_id, "waiting", f"send-rate turn at {due:%H:%M:%S} UTC")
        (job_id,) = await _defer_sends(conn, [Sends(due, [notification_id], tenant_id, turn=turn)])
        return job_id


async def hand_over(
    db: Database,
    notification_ids: Sequence[uuid.UUID],
    *,
    job_id: int | None,
    delay: float,
    tenant_id: str | None,
) -> int | None:
    """The sends job ``job_id`` owns, unclaimed, move to one new job due in ``delay`` seconds
    (the tenant holds its share of the worker's slots: its turn comes back soon, and no
    attempt is spent). Returns the new job's id (None: the job owned none of them)."""
    async with db.transaction() as conn:
        owned = await conn.fetch(queries["owned_sends"], list(notification_ids), job_id)
        if not owned:
            return None
        members = [row["id"] for row in owned]
        (new_job,) = await _defer_sends(conn, [Sends(_due(delay), members, tenant_id)])
        return new_job


async def pin(db: Database, notification_id: uuid.UUID, provider: EmailProvider) -> None:
    """Before failing over to ``provider``: should this attempt die mid-call, the retry asks
    ``provider`` alone."""
    await db.execute(queries["pin_provider"], notification_id, provider)


async def apply_provider_event(
    db: Database,
    notification_id: uuid.UUID,
    *,
    status: NotificationStatus | str,
    moves: bool,
    detail: str,
    provider_event_id: str,
    occurred_at: datetime.datetime | None,
) -> None:
    """Record a provider's event once; move the status forward if the event says so."""
    async with db.transaction() as conn:
        current = await conn.fetchval(queries["lock_notification"], notification_id)
        added = await conn.fetchval(
            queries["add_timeline"],
            notification_id,
            status,
            detail,
            provider_event_id,
            occurred_at,
        )
        if added is None or not moves or status not in RANK:
            return
        new: NotificationStatus = status
        if RANK[new] > RANK.get(current, 0):
            error = detail if new in FAILURES else None
            await conn.execute(queries["advance_status"], notification_id, new, error)


async def note(db: Database, notification_id: uuid.UUID, entry: str, detail: str) -> None:
    """A timeline line about an attempt (a provider skipped, a failover)."""
    await db.execute(queries["add_timeline"], notification_id, entry, detail, None, None)


async def _timeline(
    conn: Connection, notification_id: uuid.UUID, status: str, detail: str | None
) -> None:
    await conn.execute(queries["add_timeline"], notification_id, status, detail, None, None)


async def prune_notifications(db: Database, *, older_than_days: int, batch: int = 500) -> int:
    """Delete finished notifications past NOTIFICATION_RETENTION_DAYS, a batch per
    transaction (no long lock); returns how many."""
    return await db.in_batches(queries["prune_notifications"], older_than_days, batch=batch)


async def purge_bodies(db: Database, *, older_than_days: int, batch: int = 500) -> int:
    """Blank the rendered bodies of finished notifications past the retention; metadata and
    timeline stay. Returns how many were purged."""
    return await db.in_batches(queries["purge_bodies"], older_than_days, batch=batch)
