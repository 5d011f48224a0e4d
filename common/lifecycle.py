"""``async with`` for the resources that have ``start()`` and ``close()`` (or ``stop()``).

A class names its lifetime methods once and inherits the context-manager
glue: entering starts it, leaving closes (or stops) it, whatever ended the block.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
