"""Group commit: requests that arrive while a commit is in flight are stored together.

A writer (the webhook ingest, the email API) hands its item to :class:`GroupCommit` and
awaits the result. When no commit is in flight the item's own commit starts at once, in the
caller's task (a lone request waits for nobody and hops to no other task); items that arrive
meanwhile queue, and the next commit stores all of them with one ``store`` call (one
transaction), in a task of its own. Every caller is answered only after the commit that
stored its item.

A store may answer one item with an exception (committed, but that item's result cannot be
made): that item's caller alone gets it raised.

If Postgres refuses the batch (a value, ``InvalidInput``; a constraint, ``Conflict``; any
other refusal, ``DatabaseError``) it is stored again one item at a time, so the item at fault
fails by itself and its neighbours are stored. When the database is away, every caller of the
batch gets that error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from mimic.core import metrics
from mimic.core.db import Database
from mimic.core.errors import Conflict, DatabaseError, InvalidInput

T = TypeVar("T")
R = TypeVar("R")

#: The most items stored by one commit.
MAX_BATCH = 200


class _Pending(Generic[T, R]):
    __slots__ = ("done", "item")

    def __init__(self, item: T, done: asyncio.Future[R]) -> None:
        self.item, self.done = item, done


class GroupCommit(Generic[T, R]):
    """One per writer and database pool (so per event loop), with a single flusher."""

    def __init__(
        self, name: str, store: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
    ) -> None:
        self._name, self._store = name, store
        self._queue: list[_Pending[T, R]] = []
        #: A commit is in flight (a caller's own, or the flusher's).
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    @property
    def waiting(self) -> int:
        """Items queued for the next commit (not counting the one in flight)."""
        return len(self._queue)

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        pending = _Pending(item, done)
        if self._busy:
            self._queue.append(pending)
            # shield: this request's cancellation must not cancel the shared future.
            return await asyncio.shield(done)
        # Nothing in flight: this caller commits its own item in its own task, so if it goes
        # away it cuts short only its own commit. Whoever queues meanwhile is stored next by
        # the flusher task.
        self._busy = True
        try:
            await self._commit([pending])
        finally:
            self._hand_over()
        return done.result()

    def _hand_over(self) -> None:
        """After a caller's own commit: the flusher takes what queued meanwhile."""
        if self._queue:
            self._flusher = asyncio.create_task(self._flush(), name=f"{self._name} commit")
        else:
            self._busy = False

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        except BaseException:
            for pending in self._queue:
                pending.done.cancel()
            self._queue = []
            raise
        finally:
            self._busy, self._flusher = False, None

    async def _commit(self, batch: list[_Pending[T, R]]) -> None:
        metrics.group_commit_size.labels(self._name).observe(len(batch))
        try:
            try:
                results = list(await self._store([p.item for p in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"store gave {len(results)} results for {len(batch)}")
            except (InvalidInput, Conflict, DatabaseError) as exc:
                if len(batch) == 1:
                    _settle(batch[0], error=exc)
                    return
                # Which item Postgres refused is unknown: store each alone.
                for one in batch:
                    await self._commit([one])
                return
            except Exception as exc:
                # The database is away (503) or anything else: every caller of the batch
                # gets it; nothing was committed.
                for pending in batch:
                    _settle(pending, error=exc)
                return
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):  # the store's answer for this item alone
                    _settle(pending, error=result)
                else:
                    _settle(pending, result=result)
        except BaseException:
            # Cancelled (the process is stopping): whoever is still waiting was not answered
            # as stored.
            for pending in batch:
                if not pending.done.done():
                    pending.done.cancel()
            raise


def _settle(
    pending: _Pending[Any, R], *, result: Any = None, error: Exception | None = None
) -> None:
    if pending.done.done():
        return
    if error is None:
        pending.done.set_result(result)
        return
    pending.done.set_exception(error)
    # Its caller may be gone (cancelled while shielded): mark the error seen, so asyncio
    # does not log it as never retrieved. A waiting caller still receives it.
    pending.done.exception()


def group_commit(
    db: Database, name: str, store: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
) -> GroupCommit[T, R]:
    """The process's group commit named ``name`` on this pool (made on first use with
    ``store``; ``name`` labels mimic_group_commit_size)."""
    found = db.group_commits.get(name)
    if found is None:
        found = db.group_commits[name] = GroupCommit(name, store)
    found_typed: GroupCommit[T, R] = found
    return found_typed
