"""core.batching.GroupCommit with a store of the test's own (no database needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mimic.core.batching import GroupCommit
from mimic.core.errors import Conflict, DatabaseError, DatabaseUnavailable, InvalidInput


class GatedStore:
    """Records each call's batch; waits for ``gate`` before answering (the commit in flight)."""

    def __init__(self, refusal: Exception | None = None) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        #: Raised for a batch holding a negative item.
        self.refusal = refusal or InvalidInput("a value cannot be stored")

    async def __call__(self, batch: Sequence[int]) -> list[int]:
        self.calls.append(list(batch))
        await self.gate.wait()
        if any(item < 0 for item in batch):
            raise self.refusal
        return [item * 10 for item in batch]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_queued_during_a_commit_are_stored_by_the_next_one_together() -> None:
    store = GatedStore()
    commit: GroupCommit[int, int] = GroupCommit("unit", store)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    assert store.calls == [[1]]  # a lone item's commit starts at once
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, 3, 4)]
    await settle()
    assert commit.waiting == 3
    store.gate.set()
    assert [await first, *await asyncio.gather(*rest)] == [10, 20, 30, 40]
    assert store.calls == [[1], [2, 3, 4]]


REFUSALS = [
    InvalidInput("a value cannot be stored"),
    Conflict("this conflicts with a record that already exists"),
    DatabaseError(),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda e: type(e).__name__)
async def test_a_refused_item_fails_alone_and_its_neighbours_are_stored(
    refusal: Exception,
) -> None:
    store = GatedStore(refusal)
    store.gate.set()
    blocker = asyncio.Event()

    async def slow_first(batch: Sequence[int]) -> list[int]:
        await blocker.wait()
        return await store(batch)

    commit: GroupCommit[int, int] = GroupCommit("unit", slow_first)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    tasks = [asyncio.create_task(commit.submit(i)) for i in (2, -3, 4)]
    await settle()
    blocker.set()
    outcomes = await asyncio.gather(first, *tasks, return_exceptions=True)
    assert outcomes[:2] == [10, 20]
    assert outcomes[3] == 40
    assert outcomes[2] is refusal
    assert store.calls == [[1], [2, -3, 4], [2], [-3], [4]]


async def test_a_database_away_fails_the_whole_batch_without_retrying_each() -> None:
    store = GatedStore(DatabaseUnavailable())
    commit: GroupCommit[int, int] = GroupCommit("unit", store)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    rest = [asyncio.create_task(commit.submit(i)) for i in (-2, 3, 4)]
    await settle()
    store.gate.set()
    outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
    assert outcomes[0] == 10  # the lone first commit, before the others queued
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes[1:])
    assert store.calls == [[1], [-2, 3, 4]]


async def test_callers_still_waiting_are_cancelled_when_the_commit_is_cut_off() -> None:
    """Cut off while storing a refused batch one item at a time: the items not reached yet
    are cancelled too, not left waiting for ever."""
    calls: list[list[int]] = []
    first_done, never = asyncio.Event(), asyncio.Event()

    async def store(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        if len(calls) == 1:
            await first_done.wait()
        elif len(batch) > 1:
            raise InvalidInput("a value cannot be stored")
        else:
            await never.wait()
        return [item * 10 for item in batch]

    commit: GroupCommit[int, int] = GroupCommit("unit", store)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    second, third = (asyncio.create_task(commit.submit(i)) for i in (2, 3))
    await settle()
    first_done.set()
    assert await first == 10
    await settle()
    assert calls == [[1], [2, 3], [2]]  # storing 2 alone; 3 not reached yet
    (flusher,) = [t for t in asyncio.all_tasks() if t.get_name() == "unit commit"]
    flusher.cancel()  # what the loop does to it when the process stops
    for caller in (second, third):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, timeout=5)


async def test_a_lone_caller_commits_in_its_own_task_and_hands_over_when_cut_off() -> None:
    """No commit in flight: the caller's own commit runs in its task (no flusher task). If
    that caller is cancelled mid-commit, only its item is cut off: the items that queued
    meanwhile are still stored, by the flusher."""
    store = GatedStore()
    commit: GroupCommit[int, int] = GroupCommit("unit", store)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    assert store.calls == [[1]]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "unit commit"]
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, 3)]
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    store.gate.set()
    assert await asyncio.gather(*rest) == [20, 30]
    assert store.calls == [[1], [2, 3]]
    assert await commit.submit(4) == 40  # and the next lone caller starts afresh


async def test_an_item_answered_with_an_exception_fails_alone() -> None:
    """A store may answer one item with an exception (stored, but its result cannot be
    made): that caller alone gets it raised; its neighbours get their results."""
    gate = asyncio.Event()
    unreadable = ValueError("row 3 cannot be read")

    async def store(batch: Sequence[int]) -> list[int | Exception]:
        await gate.wait()
        return [unreadable if item == 3 else item * 10 for item in batch]

    commit: GroupCommit[int, int] = GroupCommit("unit", store)
    first = asyncio.create_task(commit.submit(1))
    await settle()
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, 3, 4)]
    await settle()
    gate.set()
    outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
    assert outcomes == [10, 20, unreadable, 40]
