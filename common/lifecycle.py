"""Lifetimes of services: ``async with`` glue, and "the first named task to end".

A class names its lifetime methods once and inherits the context-manager
glue (``StartClose``/``StartStop``): entering starts it, leaving closes (or
stops) it, whatever ended the block.

A service that runs several long-lived tasks side by side (a signal waiter,
its loops) waits for the first of them to end with ``first_to_end``; the
caller decides whether that end was expected (the signal) or a failure it
reports with ``Ended.message`` ("reconciler stopped early: RuntimeError: ...").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self


class StartClose:
    """``async with resource:`` runs ``start()``, then ``close()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class StartStop(StartClose):
    """``async with resource:`` runs ``start()``, then ``stop()`` with its default grace (``close()`` too)."""

    async def stop(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.stop()


@dataclass(frozen=True)
class Ended:
    """How the first task to end ended: with ``error``, returning (None), or ``cancelled`` from elsewhere."""

    name: str
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def message(self) -> str:
        """One line for the user: ``"{name} stopped early: {error}"``, ``"{name} stopped"`` when it returned."""
        if self.error is not None:
            text = str(self.error)
            kind = type(self.error).__name__
            return f"{self.name} stopped early: {kind}: {text}" if text else f"{self.name} stopped early: {kind}"
        if self.cancelled:
            return f"{self.name} was cancelled"
        return f"{self.name} stopped"


async def first_to_end(named: Mapping[str, Awaitable[Any]], *, keep: Collection[str] = ()) -> Ended:
    """Wait until the first of ``named`` ends; cancel and await the rest; say how it ended.

    Coroutines are started as tasks of their name. The tasks named in
    ``keep`` are only watched: another owner stops them (a node's heartbeat
    must outlive ``wait()``, through its graceful shutdown). If several end
    at once, one that failed is reported before one that returned. If the
    caller is cancelled, the tasks are cancelled and awaited all the same.
    """
    if not named:
        raise ValueError("first_to_end needs at least one task")
    tasks = {name: _as_task(name, aw) for name, aw in named.items()}
    owned = [task for name, task in tasks.items() if name not in keep]
    try:
        await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        # Which ended by themselves: read before the rest are cancelled below.
        ended = [_ended(name, task) for name, task in tasks.items() if task.done()]
    finally:
        for task in owned:
            task.cancel()
        await asyncio.gather(*owned, return_exceptions=True)
    return next((e for e in ended if e.error is not None), ended[0])


def _as_task(name: str, aw: Awaitable[Any]) -> asyncio.Future[Any]:
    if asyncio.iscoroutine(aw):
        return asyncio.get_running_loop().create_task(aw, name=name)
    return asyncio.ensure_future(aw)


def _ended(name: str, task: asyncio.Future[Any]) -> Ended:
    if task.cancelled():
        return Ended(name, cancelled=True)
    return Ended(name, task.exception())
