"""The audit log: one row per admin action, naming the key by its id (never its value).

The only module that writes ``audit_log``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import msgspec

from mimic.core.db import Database, load_queries
from mimic.core.errors import MimicError

queries = load_queries("mimic.core")

#: Every action the audit log records: the one definition (an action a caller names that is
#: not here fails the type check).
Action = Literal[
    # events: the gateway's operators
    "replay",
    "retry",
    "bulk_retry",
    # events: the gateway's destinations and routes (API, CLI, the routes file)
    "create_destination",
    "update_destination",
    "delete_destination",
    "pause_destination",
    "resume_destination",
    "disable_destination",
    "rotate_destination_secret",
    "create_route",
    "update_route",
    "delete_route",
    "sync_routes_file",
    # email: BYOK credentials (a read is recorded only when refused), tenant settings,
    # suppressions
    "put_credential",
    "delete_credential",
    "read_credential",
    "put_tenant_settings",
    "add_suppression",
    "remove_suppression",
    # core: tenant keys (`mimic keys`)
    "create_key",
    "revoke_key",
    # billing: Stripe sessions
    "create_checkout_session",
    "create_portal_session",
]


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    at: datetime.datetime
    key_id: str
    action: str
    target_ids: list[str]
    outcome: str
    detail: dict[str, Any]


async def list_entries(
    db: Database, *, action: str | None, key_id: str | None, limit: int, before: int | None
) -> list[AuditEntry]:
    """The audit log, newest first (the console's view of it)."""
    rows = await db.fetch_filtered(queries["list_audit"], action, key_id, limit, before)
    return [
        msgspec.convert({**dict(r), "detail": json.loads(r["detail"])}, AuditEntry) for r in rows
    ]


class Entry:
    """What an audited action adds to its row before it ends."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self.detail: dict[str, Any] = {}


async def record(
    db: Database,
    *,
    key_id: str,
    action: Action,
    targets: Sequence[str],
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await db.execute(
        queries["record_audit"],
        key_id,
        action,
        list(targets),
        outcome,
        json.dumps(detail or {}, default=str),
    )


@contextlib.asynccontextmanager
async def audited(
    db: Database, key_id: str, action: Action, targets: Sequence[str]
) -> AsyncIterator[Entry]:
    """Run an admin action and record it: ``ok``, or the error code it was refused with."""
    entry = Entry(targets)
    async with audited_refusal(db, key_id, action, targets, entry=entry):
        yield entry
    await record(
        db, key_id=key_id, action=action, targets=entry.targets, outcome="ok", detail=entry.detail
    )


@contextlib.asynccontextmanager
async def audited_refusal(
    db: Database,
    key_id: str,
    action: Action,
    targets: Sequence[str],
    *,
    entry: Entry | None = None,
) -> AsyncIterator[Entry]:
    """Record an action only when it is refused, with the error code: for reads, whose
    successes would flood the log, but whose refusals (a key probing another tenant) matter."""
    entry = entry or Entry(targets)
    try:
        yield entry
    except MimicError as exc:
        await record(
            db,
            key_id=key_id,
            action=action,
            targets=entry.targets,
            outcome=exc.code,
            detail=entry.detail,
        )
        raise
