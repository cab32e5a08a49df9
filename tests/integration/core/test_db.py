"""The one driver-error boundary: what each asyncpg failure becomes, and what it leaves alone."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mimic.core.db import Database, create_pool
from mimic.core.errors import Conflict, DatabaseError, DatabaseUnavailable, InvalidInput


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    pool = await create_pool(database_url, max_size=2)
    database = Database(pool)
    yield database
    await database.close()


async def test_a_value_postgres_refuses_is_invalid_input(database: Database) -> None:
    with pytest.raises(InvalidInput) as info:
        await database.fetchval("SELECT $1::text::int", "not a number")
    assert info.value.status_code == 400
    with pytest.raises(InvalidInput):
        await database.fetchval("SELECT $1::jsonb", '{"a": "\\u0000"}')


async def test_a_unique_violation_is_a_conflict(database: Database) -> None:
    await database.execute("CREATE TABLE t (id int PRIMARY KEY)")
    await database.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(Conflict) as info:
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
    assert info.value.status_code == 409


async def test_any_other_refusal_is_a_generic_database_error(database: Database) -> None:
    with pytest.raises(DatabaseError) as info:
        await database.fetch("SELECT * FROM no_such_table")
    assert info.value.status_code == 500
    assert "no_such_table" not in info.value.message  # the server's words stay in the log


async def test_an_unreachable_database_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = await create_pool(f"postgresql://x@127.0.0.1:{port}/none", max_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            await Database(pool).fetchval("SELECT 1")
        assert info.value.status_code == 503
    finally:
        await pool.close()


async def test_the_callers_own_errors_pass_through_and_roll_back(database: Database) -> None:
    await database.execute("CREATE TABLE t (id int)")

    async def times_out() -> None:
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)

    async def raises_its_own() -> None:
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (2)")
            raise KeyError("mine")

    # A TimeoutError of the caller's own making is not a database outage.
    with pytest.raises(TimeoutError):
        await times_out()
    with pytest.raises(KeyError):
        await raises_its_own()
    assert await database.fetchval("SELECT count(*) FROM t") == 0


@pytest.mark.parametrize(
    ("query", "args", "expected"),
    [
        ("SELECT 1/0", (), InvalidInput),  # a data exception (class 22): the caller's value
        ("SELEC 1", (), DatabaseError),  # our own SQL is wrong: not the caller's fault
        ("SELECT $1::int", ("x",), InvalidInput),  # a value asyncpg cannot encode
    ],
)
async def test_no_asyncpg_exception_escapes(
    database: Database, query: str, args: tuple[str, ...], expected: type[Exception]
) -> None:
    with pytest.raises(expected) as raised:
        await database.fetchval(query, *args)
    assert not isinstance(raised.value, asyncpg.PostgresError)
    assert type(raised.value) is expected


async def test_a_pinned_connection_is_kept_until_it_breaks(
    database: Database, db: asyncpg.Connection
) -> None:
    """A group commit's connection stays out of the pool between its calls; a refused value
    keeps it; one closed by the server is replaced without a failure; any other failure
    gives it back to the pool. Closing the database gives it back too (no hang)."""

    async def backend() -> int:
        async with database.pinned("unit") as conn:
            return int(await conn.fetchval("SELECT pg_backend_pid()"))

    first = await backend()
    assert await backend() == first
    assert database.pool.get_idle_size() == 0  # held, not idle in the pool
    with pytest.raises(InvalidInput):
        async with database.pinned("unit") as conn:
            await conn.fetchval("SELECT $1::text::int", "x")
    assert await backend() == first

    await db.execute("SELECT pg_terminate_backend($1)", first)

    async def closed() -> bool:
        await asyncio.sleep(0.05)
        probe = await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first)
        return bool(probe == 0)

    while not await closed():
        pass
    await asyncio.sleep(0.2)  # the client side notices the closed socket
    second = await backend()  # replaced at once: no 503 for a connection found closed
    assert second != first

    with pytest.raises(RuntimeError):
        async with database.pinned("unit"):
            raise RuntimeError("the caller's own failure")
    assert database.pool.get_idle_size() == 1  # given back
    await asyncio.wait_for(database.close(), timeout=10)


@pytest.mark.parametrize("size", [1, 2, 3])
async def test_pinning_always_leaves_a_connection_to_other_queries(
    database_url: str, size: int
) -> None:
    """With MIMIC_DB_POOL_MAX_SIZE=1, or 2 with the worker's two writers (claims and sent
    records), pinned connections would starve every other query."""
    database = Database(await create_pool(database_url, max_size=size))
    try:

        async def use(writer: str) -> None:
            async with database.pinned(writer) as conn:
                await conn.fetchval("SELECT pg_sleep(0.05)")

        writers = ("claims", "sent", "third")
        # All at once (each takes the pool's connection while the others wait for theirs),
        # then one after another.
        await asyncio.wait_for(asyncio.gather(*(use(w) for w in writers)), timeout=5)
        assert len(database._pinned) == size - 1
        for writer in writers:
            await asyncio.wait_for(use(writer), timeout=5)
        assert len(database._pinned) == size - 1
        assert await asyncio.wait_for(database.fetchval("SELECT 2"), timeout=5) == 2
    finally:
        await database.close()
