"""One asyncio lock per key (a job, a VM), forgotten when nobody holds or waits for it.

A plain ``dict.setdefault(key, Lock())`` that pops the lock when done lets a
newcomer make a second lock for the key while a waiter still queues on the
first one; counting the users keeps exactly one lock per key alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """``async with locks.hold(key):`` serialises everything done under one key."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def acquire(self, key: str) -> asyncio.Lock:
        """Count a user of ``key``'s lock and return it (to ``async with``); pair with ``release``."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        return lock

    def release(self, key: str) -> None:
        """The user is done with ``key``'s lock: the last one forgets it."""
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        lock = self.acquire(key)
        try:
            async with lock:
                yield
        finally:
            self.release(key)

    def __len__(self) -> int:
        return len(self._locks)
