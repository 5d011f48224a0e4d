"""How many VMs this node may run: a total, and optional per-label limits.

A ``Capacity`` hands out ``Slot``s. The queue's prefetch follows it: the
node keeps ``free_slots`` of its consumer equal to ``free()`` plus the jobs
held waiting for their ``needs`` or for a slot of their label (deliveries
that must not block capacity). A label limit cannot be expressed as a
prefetch on one channel, so the node stops consuming the labels at their
limit (``full_labels``) and resumes once a slot of theirs is free; a delivery
of such a label that arrived meanwhile waits in ``acquire`` (still
unacknowledged: if the node dies, the broker gives it to another node).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """One VM's worth of capacity for a job of ``label``; give it back with ``Capacity.release``."""

    label: str
    job_id: str


class Capacity:
    """Total and per-label VM limits; ``on_change`` is called whenever the free count changes."""

    def __init__(self, total: int, label_limits: Mapping[str, int] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        if total < 1:
            raise ValueError("capacity must be at least 1")
        self.total = total
        self.label_limits = dict(label_limits or {})
        self._used: Counter[str] = Counter()
        self._in_use = 0
        self._changed = asyncio.Event()
        self._on_change = on_change or (lambda: None)

    @property
    def in_use(self) -> int:
        return self._in_use

    def used(self, label: str) -> int:
        return self._used[label]

    def free(self) -> int:
        """Slots free in total (ignoring label limits)."""
        return max(0, self.total - self._in_use)

    def label_full(self, label: str) -> bool:
        """``label`` is at its limit: none of its jobs can start, however many slots are free."""
        limit = self.label_limits.get(label)
        return limit is not None and self._used[label] >= limit

    def full_labels(self) -> frozenset[str]:
        """Every label at its limit (the node stops consuming them)."""
        return frozenset(label for label, limit in self.label_limits.items() if self._used[label] >= limit)

    def can_take(self, label: str) -> bool:
        limit = self.label_limits.get(label)
        return self._in_use < self.total and (limit is None or self._used[label] < limit)

    def try_acquire(self, label: str, job_id: str) -> Slot | None:
        """A slot now, or None when the total or the label's limit is reached."""
        if not self.can_take(label):
            return None
        self._in_use += 1
        self._used[label] += 1
        self._on_change()
        return Slot(label, job_id)

    async def acquire(self, label: str, job_id: str, stop: asyncio.Event) -> Slot | None:
        """Wait for a slot; None once ``stop`` is set first."""
        while True:
            slot = self.try_acquire(label, job_id)
            if slot is not None or stop.is_set():
                return slot
            changed = self._changed
            waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

    def release(self, slot: Slot) -> None:
        if self._used[slot.label] <= 0:
            raise ValueError(f"slot of label {slot.label!r} released twice")
        self._used[slot.label] -= 1
        self._in_use -= 1
        # Wake every waiter: each re-checks its own label.
        self._changed.set()
        self._changed = asyncio.Event()
        self._on_change()
