"""The database layer: an asyncpg pool, named SQL queries, and the one driver-error boundary.

Nothing outside this module sees an ``asyncpg`` exception. Every call that reaches the
driver goes through :func:`translate`:

- the database is away (connection refused or lost, shutdown, wrong name or login) ->
  :class:`DatabaseUnavailable` (503);
- a value Postgres cannot take (``DataError``: ``\\u0000`` in text, a number out of range)
  -> :class:`InvalidInput` (400);
- a unique index says no -> :class:`Conflict` (409);
- anything else Postgres refuses -> :class:`DatabaseError` (500).

Only driver calls are translated: an exception raised by the caller's own code inside a
``transaction()`` block passes through untouched.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from mimic.core.errors import Conflict, DatabaseError, DatabaseUnavailable, InvalidInput

logger = logging.getLogger(__name__)

_QUERY_HEADER = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)

# Errors that mean "the database is not there right now", not "your query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection whose server went away between two statements can be caught mid-state
    # ("cannot switch to state ..."): as gone as a closed one.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # Reachable but refusing us (wrong database, role or password): still "not there" for
    # callers, who should retry later rather than see a 500.
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)

T = TypeVar("T")


@functools.cache
def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Load the ``-- name: x`` sectioned SQL file shipped inside ``package``: read and parsed
    once per process, however many modules ask for it."""
    text = (resources.files(package) / filename).read_text(encoding="utf-8")
    return parse_queries(text, f"{package}/{filename}")


def parse_queries(text: str, source: str) -> dict[str, str]:
    parts = _QUERY_HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query {name!r} in {source}")
        # Drop the one-line description comment(s) under the header.
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.startswith("--")
        ).strip()
        queries[name] = sql
    return queries


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Map a driver exception to Mimic's error tree. Wrap driver calls only."""
    try:
        yield
    except asyncpg.DataError as exc:
        raise InvalidInput(f"a value cannot be stored: {type(exc).__name__}") from exc
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("this conflicts with a record that already exists") from exc
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable() from exc
    except asyncpg.PostgresError as exc:
        # The server's text stays in our log; callers get a generic 500.
        logger.error("the database refused a statement: %s: %s", type(exc).__name__, exc)
        raise DatabaseError() from exc


class Connection:
    """One connection (pooled or direct) whose every call is translated."""

    def __init__(self, raw: asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[Any]) -> None:
        self.raw = raw

    def is_in_transaction(self) -> bool:
        return self.raw.is_in_transaction()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        with translate():
            return await self.raw.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        with translate():
            return await self.raw.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with translate():
            return await self.raw.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        with translate():
            return await self.raw.execute(query, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction (or savepoint) on this connection; begin and commit are translated."""
        tx = self.raw.transaction()
        with translate():
            await tx.start()
        try:
            yield self
        except BaseException:
            with contextlib.suppress(Exception):
                await tx.rollback()
            raise
        try:
            with translate():
                await tx.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await tx.rollback()
            raise


@contextlib.asynccontextmanager
async def connect(dsn: str, *, timeout: float = 10) -> AsyncIterator[Connection]:
    """A direct connection outside the pool (migrations)."""
    with translate():
        raw = await asyncpg.connect(dsn, timeout=timeout)
    try:
        yield Connection(raw)
    finally:
        with contextlib.suppress(Exception):
            await raw.close()


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Mimic keeps no session state (no LISTEN, SET, cursors or advisory locks on pooled
    connections), so a connection goes back to the pool without asyncpg's reset query: one
    round trip less per use. An open transaction is still rolled back by asyncpg itself."""


async def create_pool(
    dsn: str, *, max_size: int, statement_cache_size: int = 100
) -> asyncpg.Pool[asyncpg.Record]:
    # min_size=0: the API starts (and /readyz answers 503) while the database is down.
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        command_timeout=30,
        timeout=5,
        reset=_keep_session,
        statement_cache_size=statement_cache_size,
    )
    assert pool is not None
    return pool


def as_struct(row: asyncpg.Record | dict[str, Any], type_: type[T]) -> T:
    """A row as a typed struct (field names are the column names)."""
    return msgspec.convert(dict(row), type_, from_attributes=False)


def as_structs(rows: Sequence[asyncpg.Record], type_: type[T]) -> list[T]:
    return [as_struct(row, type_) for row in rows]


#: A pinned connection goes back to the pool after this many calls, or this long unused.
PINNED_USES = 1000
PINNED_IDLE_SECONDS = 30.0


class _Lease:
    """A connection pinned by Database.pinned, with its use count and last use."""

    __slots__ = ("conn", "last_used", "raw", "uses")

    def __init__(self, raw: PoolConnectionProxy[Any]) -> None:
        self.raw, self.conn = raw, Connection(raw)
        self.uses = 0
        self.last_used = time.monotonic()

    def closed(self) -> bool:
        try:
            return self.raw.is_closed()
        except asyncpg.InterfaceError:
            return True  # the pool took it back when it closed (a detached proxy)


class Database:
    """The process's pool, whose every call is translated; one instance per process."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool
        #: Each writer's group commit on this pool, by name (see core.batching).
        self.group_commits: dict[str, Any] = {}
        #: Per-process caches of what the domains read often and rarely changes, by name.
        self.caches: dict[str, Any] = {}
        self._pinned: dict[str, _Lease] = {}
        #: Writers acquiring a connection to pin (counted against the pool with the pinned).
        self._pinning = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        with translate():
            raw = await self.pool.acquire()
        try:
            yield Connection(raw)
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(raw)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def pinned(self, name: str) -> AsyncIterator[Connection]:
        """A pooled connection kept between the calls of one sequential writer (a group
        commit, which has one commit in flight at a time): each call skips the pool's
        acquire and release, whose release alone costs a task and two event-loop turns.

        It goes back to the pool (which discards a broken one) after any failure but a
        refused value, after PINNED_USES calls, and at its next use after PINNED_IDLE_SECONDS
        idle (an idle writer keeps it until then), so the pool's own upkeep (reconnecting,
        recycling) still reaches it; one found closed is replaced at once. Pinning always
        leaves one connection of the pool to the other queries: in a pool of one nothing is
        pinned, in a pool of two one writer at most. Not for concurrent use."""
        lease = self._pinned.get(name)
        if lease is not None and (
            lease.closed()
            or lease.uses >= PINNED_USES
            or time.monotonic() - lease.last_used > PINNED_IDLE_SECONDS
        ):
            del self._pinned[name]
            await self._give_back(lease)
            lease = None
        if lease is None:
            # Checked and reserved with no await in between, so two writers pinning at once
            # cannot both take the last spare connection.
            if len(self._pinned) + self._pinning + 1 >= self.pool.get_max_size():
                async with self.connection() as conn:
                    yield conn
                return
            self._pinning += 1
            try:
                with translate():
                    raw = await self.pool.acquire()
            finally:
                self._pinning -= 1
            lease = self._pinned[name] = _Lease(raw)
        lease.uses += 1
        try:
            yield lease.conn
        except InvalidInput:
            raise  # the statement was refused; the connection is fine
        except BaseException:
            self._pinned.pop(name, None)
            await self._give_back(lease)
            raise
        finally:
            lease.last_used = time.monotonic()

    async def _give_back(self, lease: _Lease) -> None:
        with contextlib.suppress(Exception):
            await self.pool.release(lease.raw)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        with translate():
            return await self.pool.fetch(query, *args)

    async def fetch_filtered(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """For queries with optional filters (`$1 IS NULL OR provider = $1`): planned for the
        values at hand, so the matching index is used. A cached generic plan, which Postgres
        may switch to after a few runs, cannot know which filters are set."""
        async with self.transaction() as conn:
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        with translate():
            return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with translate():
            return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        with translate():
            return await self.pool.execute(query, *args)

    async def in_batches(self, query: str, *args: Any, batch: int) -> int:
        """Run a statement that touches at most ``batch`` rows (its last argument) until it
        touches fewer: many short transactions instead of one long lock. Returns the total."""
        total = 0
        while True:
            done = await self.execute(query, *args, batch)
            count = int(done.split()[-1])
            total += count
            if count < batch:
                return total

    async def close(self) -> None:
        pinned, self._pinned = list(self._pinned.values()), {}
        for lease in pinned:
            await self._give_back(lease)
        await self.pool.close()
