"""The audit log: one row per admin action, naming the key by its id (never its value).

The only module that writes ``audit_log``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from mimic.core.db import Database, load_queries
from mimic.core.errors import MimicError

queries = load_queries("mimic.core")


class Entry:
    """What an audited action adds to its row before it ends."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self.detail: dict[str, Any] = {}


async def record(
    db: Database,
    *,
    key_id: str,
    action: str,
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
    db: Database, key_id: str, action: str, targets: Sequence[str]
) -> AsyncIterator[Entry]:
    """Run an admin action and record it: ``ok``, or the error code it was refused with."""
    entry = Entry(targets)
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
    await record(
        db, key_id=key_id, action=action, targets=entry.targets, outcome="ok", detail=entry.detail
    )
