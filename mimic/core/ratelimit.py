"""Send rates shared by every worker process: a token bucket per key, in one statement.

The only module that writes ``send_rate_buckets``. Taking a token always succeeds; when the
bucket is empty the balance goes negative, and the caller waits ``-balance / rate`` seconds
before it may act. The row lock orders concurrent takers, so N workers together keep the
rate. A caller's wait is bounded by the senders in flight (concurrency x workers) / rate.
"""

from __future__ import annotations

import asyncio

from mimic.core.db import Database, load_queries

queries = load_queries("mimic.core")


async def take(
    db: Database, key: str, rate: float, *, capacity: float = 1.0, or_nothing: bool = False
) -> float:
    """Reserve one token of ``key``'s bucket; returns how many seconds to wait before using
    it (0: now). By default the bucket holds one token: sends are paced evenly at ``rate``
    per second, never bunched, so whatever window the provider counts in, it sees at most
    ``rate``; ``capacity`` lets that many through at once (a burst).

    ``or_nothing``: take a token only if one is there now; else take nothing and return the
    wait (for a caller that refuses instead of waiting, such as the API's per-key limit: a
    refused request costs nothing, so a client that keeps hammering gets in again as soon as
    a token refills, and never faster than ``rate``). Committed without waiting for the disk
    (a token lost in a crash is one request more; the flush cost 0.6 ms per request here)."""
    if or_nothing:
        wait: float = await db.fetchval(queries["take_token_now"], key, capacity, rate)
        return wait
    tokens: float = await db.fetchval(queries["take_send_token"], key, capacity, rate)
    return max(0.0, -tokens / rate)


#: Longest a caller sleeps for its turn, in its worker slot: a later turn is the caller's to
#: come back for (a job scheduled for it), so no slot is held waiting.
MAX_WAIT_SECONDS = 1.0


async def wait_turn(
    db: Database, key: str, rate: float | None, *, max_wait: float = MAX_WAIT_SECONDS
) -> float:
    """Take a token: sleep until it is due if that is at most ``max_wait`` away, and return
    0; else return how many seconds away it is, without sleeping (the token stays taken: the
    caller's turn is then, and it must not take another). No rate (None or 0): no limit, no
    query."""
    if not rate:
        return 0.0
    delay = await take(db, key, rate)
    if delay > max_wait:
        return delay
    if delay > 0:
        await asyncio.sleep(delay)
    return 0.0


async def try_turn(
    db: Database, key: str, rate: float | None, *, max_wait: float = MAX_WAIT_SECONDS
) -> float:
    """A turn of a shared bucket, only if it is due within ``max_wait``: sleep until it is
    and return 0; else take nothing and return how many seconds away the next one is (the
    caller tries again then: nobody books a shared bucket far ahead). No rate: 0, no query."""
    if not rate:
        return 0.0
    delay: float = await db.fetchval(queries["try_send_token"], key, 1.0, rate, max_wait)
    if delay > max_wait:
        return delay
    if delay > 0:
        await asyncio.sleep(delay)
    return 0.0
