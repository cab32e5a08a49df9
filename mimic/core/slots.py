"""Per-key shares of a process's slots: at most ``limit`` holders of one key at once.

In-process on purpose: a worker's slots are its own, so a tenant's share of them is too.
"""

from __future__ import annotations


class KeyedSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def try_take(self, key: str) -> bool:
        """Take one of ``key``'s slots if it has one free; never waits."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def give_back(self, key: str) -> None:
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]

    def held(self, key: str) -> int:
        return self._held.get(key, 0)
