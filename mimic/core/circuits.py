"""Circuit breakers shared by every worker: the only module that writes ``provider_circuits``.

After ``failures`` certain failures of one key (a provider and credential) within ``window``
seconds, the key is skipped for ``cooldown`` seconds. Reads go through a per-process snapshot
refreshed at most once a second, so a healthy send costs no query; a success writes only when
the key had failures.
"""

from __future__ import annotations

import datetime
import time

import msgspec

from mimic.core.db import Database, load_queries
from mimic.core.errors import MimicError

queries = load_queries("mimic.core")


class Policy(msgspec.Struct, frozen=True):
    failures: int
    window_seconds: float
    cooldown_seconds: float


class Circuits:
    """One per process (it holds the snapshot)."""

    def __init__(self, db: Database, policy: Policy, *, refresh_seconds: float = 1.0) -> None:
        self._db, self._policy, self._refresh = db, policy, refresh_seconds
        self._open: dict[str, datetime.datetime] = {}
        self._failing: set[str] = set()
        self._read_at = float("-inf")

    async def _snapshot(self) -> None:
        if time.monotonic() - self._read_at < self._refresh:
            return
        rows = await self._db.fetch(queries["circuit_snapshot"])
        now = datetime.datetime.now(datetime.UTC)
        self._open = {
            r["key"]: r["open_until"] for r in rows if r["open_until"] and r["open_until"] > now
        }
        self._failing = {r["key"] for r in rows if r["failures"] > 0}
        self._read_at = time.monotonic()

    async def open_until(self, key: str) -> datetime.datetime | None:
        """When the key's circuit closes again, or None when it may be used."""
        await self._snapshot()
        until = self._open.get(key)
        if until is not None and until <= datetime.datetime.now(datetime.UTC):
            return None
        return until

    async def failed(
        self, key: str, reason: str, policy: Policy | None = None
    ) -> datetime.datetime | None:
        """Count a certain failure; returns open_until when this one opened the circuit.
        ``policy``: this key's own, instead of the process's."""
        policy = policy or self._policy
        count: int = await self._db.fetchval(
            queries["circuit_failure"], key, reason[:300], policy.window_seconds
        )
        self._failing.add(key)
        if count < policy.failures:
            return None
        until: datetime.datetime = await self._db.fetchval(
            queries["open_circuit"], key, policy.cooldown_seconds
        )
        self._open[key] = until
        return until

    async def succeeded(self, key: str) -> None:
        """Best effort: called after a send went out, so it must not fail that send."""
        if key in self._failing:
            try:
                await self._db.execute(queries["reset_circuit"], key)
            except MimicError:
                return  # the next success resets it
            self._failing.discard(key)
