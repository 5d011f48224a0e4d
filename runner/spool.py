"""The runner's local copy of every log batch, kept until acknowledged.

A batch is written to ``<dir>/<job>-<attempt>.spool`` (u32 length +
serialized LogBatch) the moment it is sealed, before any attempt to send it;
the shipper reads unacknowledged batches back from the file after a
reconnect. The file survives the runner: when the orchestrator is gone the
logs stay on the VM's disk. (No fsync: the spool guards against a lost
network and a crashed runner, not a crashed VM, which ends the job anyway.)
"""

from __future__ import annotations

import asyncio
import collections
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.rpc import runner_pb2

LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Spooled:
    first: int
    last: int
    offset: int
    length: int


class Spool:
    """Batches on disk plus the index of those not acknowledged yet."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self._size = 0
        self._pending: collections.deque[Spooled] = collections.deque()
        self.acked = 0  # highest sequence the orchestrator holds durably
        self.last_sequence = 0  # highest sequence spooled
        self._changed = asyncio.Event()

    def append(self, batch: runner_pb2.LogBatch, count: int) -> None:
        raw = batch.SerializeToString()
        os.write(self._fd, LENGTH.pack(len(raw)) + raw)
        last = batch.first_sequence + count - 1
        self._pending.append(Spooled(batch.first_sequence, last, self._size + LENGTH.size, len(raw)))
        self._size += LENGTH.size + len(raw)
        self.last_sequence = last
        self._wake()

    def ack(self, durable: int) -> None:
        if durable <= self.acked:
            return
        self.acked = durable
        while self._pending and self._pending[0].last <= durable:
            self._pending.popleft()
        self._wake()

    def unsent(self, after: int) -> Iterator[tuple[int, bytes]]:
        """(last sequence, serialized batch) of spooled batches ending after
        ``after``, read from the file one at a time (a long outage can leave
        far more spooled than should sit in memory)."""
        for entry in list(self._pending):
            if entry.last > after:
                yield entry.last, os.pread(self._fd, entry.length, entry.offset)

    @property
    def all_acked(self) -> bool:
        return self.acked >= self.last_sequence

    def change_event(self) -> asyncio.Event:
        """An event set by the next append or ack."""
        return self._changed

    async def changed(self, timeout: float | None = None) -> None:
        """Wait for the next append or ack (or ``timeout`` seconds)."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
