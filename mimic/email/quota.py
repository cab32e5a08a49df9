"""Daily send quotas: how many emails a tenant may have accepted per UTC day (an admin sets
``daily_send_quota`` in the tenant's settings; none by default). The only module that writes
``tenant_daily_sends``.

A send takes its count before it is stored, with one conditional statement per tenant on a
counter row per (tenant, day), which adds the count only while the sum stays within the
quota: the row lock orders concurrent API processes, so together they never count past the
quota. A send that is then not stored (the database refused it, or a concurrent request with
the same Idempotency-Key stored it first) gives its count back. So the count is never lower
than what was accepted; it can only be higher, by the sends of a process that died between
the two steps, until the day ends. (The counter is not written in the storing transaction
itself: that transaction is ``status.create_many``'s, the notifications' one writer.)
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping

import msgspec

from mimic.core.db import Connection, Database
from mimic.core.errors import MimicError, TooManyRequests, whole_seconds
from mimic.email.repository import queries

logger = logging.getLogger(__name__)


class Counted(msgspec.Struct, frozen=True):
    """Sends counted against a tenant's quota, on the day they were counted."""

    tenant_id: str
    day: datetime.date
    sends: int


async def take(db: Database, wanted: Mapping[str, tuple[int, int]]) -> list[Counted]:
    """Count ``sends`` more for each tenant within its ``quota`` (tenant -> (sends, quota)),
    all or none: 429 ``quota_exceeded`` for the first tenant (by id) it would take past its
    quota, and nothing counted. One statement for one tenant (a tenant key's batch)."""
    items = sorted((tenant, sends, limit) for tenant, (sends, limit) in wanted.items() if sends)
    if not items:
        return []
    if len(items) == 1:
        tenant, sends, limit = items[0]
        day = await db.fetchval(queries["count_daily_sends"], tenant, sends, limit)
        if day is None:
            raise await _exceeded(db, tenant, sends, limit)
        return [Counted(tenant, day, sends)]
    refused: tuple[str, int, int] | None = None
    counted: list[Counted] = []
    try:
        async with db.transaction() as conn:
            for tenant, sends, limit in items:
                day = await conn.fetchval(queries["count_daily_sends"], tenant, sends, limit)
                if day is None:
                    refused = (tenant, sends, limit)
                    raise _Refused()
                counted.append(Counted(tenant, day, sends))
    except _Refused:
        assert refused is not None
        raise await _exceeded(db, *refused) from None
    return counted


class _Refused(Exception):
    """Rolls back the counts of the tenants before the one over its quota."""


async def _exceeded(db: Database, tenant: str, sends: int, limit: int) -> TooManyRequests:
    row = await db.fetchrow(queries["daily_sends_today"], tenant)
    assert row is not None
    used, resets_in = int(row["sends"]), float(row["resets_in"])
    these = "this email" if sends == 1 else f"these {sends} emails"
    hours, minutes = divmod(whole_seconds(resets_in) // 60, 60)
    return TooManyRequests(
        f"tenant {tenant!r} may have {limit} emails accepted per UTC day (daily_send_quota) "
        f"and has had {used} today: {these} would exceed it, so nothing was stored. The count "
        f"starts over at 00:00 UTC, in {hours} h {minutes} min (Retry-After); or an admin "
        f"raises the quota (PUT /api/v1/tenants/{tenant}/settings)",
        code="quota_exceeded",
        retry_after=resets_in,
    )


async def give_back(
    db: Database, counted: list[Counted], unused: Mapping[str, int] | None = None
) -> None:
    """Give back the counts of sends that were not stored: ``unused`` per tenant, or (None)
    all of ``counted``. Best effort: should the database refuse, the count stays too high
    (a quota errs on the side of sending less) and the caller's own error stands."""
    for item in counted:
        sends = item.sends if unused is None else min(item.sends, unused.get(item.tenant_id, 0))
        if not sends:
            continue
        try:
            await db.execute(queries["uncount_daily_sends"], item.tenant_id, item.day, sends)
        except MimicError as exc:
            logger.warning(
                "could not give back %d send(s) of tenant %s's daily quota: %s",
                sends,
                item.tenant_id,
                exc.code,
            )


async def recount(conn: Connection, tenant_id: str) -> None:
    """A quota is being set (in the settings' transaction): today's count becomes at least
    what the tenant has had accepted today, so a quota set at noon counts the morning."""
    await conn.execute(queries["recount_daily_sends"], tenant_id)
