"""The database layer: an asyncpg pool, named SQL queries, and driver-error translation.

Handlers and tasks never see an ``asyncpg`` exception: connection-level failures
become :class:`DatabaseUnavailable` here, where they leave this layer.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mimic.errors import DatabaseUnavailable

_QUERY_HEADER = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)

# Errors that mean "the database is not there right now", not "your query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # Reachable but refusing us (wrong database, role or password): still "not there" for
    # callers, who should retry later rather than see a 500.
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


#: A connection from the pool or a direct one; both run the same queries.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Load the ``-- name: x`` sectioned SQL file shipped inside ``package``."""
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
def wrap_exceptions() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable() from exc


async def create_pool(dsn: str, *, max_size: int) -> asyncpg.Pool[asyncpg.Record]:
    # min_size=0: the API starts (and /readyz answers 503) while the database is down.
    pool = await asyncpg.create_pool(
        dsn, min_size=0, max_size=max_size, command_timeout=30, timeout=5
    )
    assert pool is not None
    return pool


class Database:
    """A thin wrapper that translates driver errors; one instance per process."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        with wrap_exceptions():
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        with wrap_exceptions():
            async with self.pool.acquire() as conn:
                yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        with wrap_exceptions():
            return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        with wrap_exceptions():
            return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with wrap_exceptions():
            return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        with wrap_exceptions():
            return await self.pool.execute(query, *args)

    async def close(self) -> None:
        await self.pool.close()
