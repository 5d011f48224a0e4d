"""``KeyedLocks``: one lock per key while anyone holds or waits for it, none after."""

from __future__ import annotations

import asyncio

from common.keyedlocks import KeyedLocks


async def test_one_key_at_a_time_and_forgotten_after() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    most = 0
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def work(name: str, key: str, hold: asyncio.Event | None = None) -> None:
        nonlocal most
        async with locks.hold(key):
            inside.append(name)
            most = max(most, sum(1 for n in inside if n.startswith(key)))
            if hold is not None:
                first_in.set()
                await hold.wait()
            await asyncio.sleep(0)
            inside.remove(name)

    first = asyncio.create_task(work("vm-a first", "vm-a", release_first))
    await first_in.wait()
    waiter = asyncio.create_task(work("vm-a waiter", "vm-a"))
    other = asyncio.create_task(work("vm-b", "vm-b"))
    await other  # another key is not held up
    release_first.set()
    await first
    # A newcomer once the first let go, while the waiter may still be queued on the same lock.
    await asyncio.gather(waiter, work("vm-a newcomer", "vm-a"))
    assert most == 1
    assert len(locks) == 0
