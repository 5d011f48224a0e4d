"""Final states reach the store, however long it is away.

An attempt that ended (its runner's outcome, an error, a cancel) must have
that end recorded, or it stays ``running`` in the store with a live host that
keeps heartbeating - no sweep would ever take it. ``Outcomes.record`` writes
the final state (and the steps, and the terminal event in the same
transaction) and, while the store cannot be reached, keeps the terminal event
on the node's disk and tries again after a pause that grows to 2 s (one small
write per attempt; the end is recorded within 2 s of the store's return), for
as long as the outage lasts. It stops trying only when told to (the node
shutting down); what it kept is applied by the next ``replay`` - at the
node's next start, before it takes back its attempts, or by the node's sweep
(``finish_lost``, requeue.py) while it runs.

A kept outcome is one file ``<job_id>.<attempt>.pb`` under the node's
``data_dir/outcomes``: the serialized terminal ``JobEvent``, which carries
the state, the reason and the steps. Applying one twice is harmless: the
final transition is conditional, so only the first applies (and announces).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from common.backoff import Backoff
from common.rpc import jobs_pb2
from orchestrator.node.events import announce_transition
from orchestrator.node.outbox import Outbox
from orchestrator.store import JobState, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

SUFFIX = ".pb"


async def while_unavailable(write: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str, job_id: str,
                            on_outage: Callable[[], Awaitable[None]] | None = None,
                            pauses: tuple[float, float] = (0.1, 2.0)) -> T:
    """``write()``, again after a pause growing to ``pauses[1]`` s for as long as it raises
    ``StoreUnavailable``; the last such error once ``stop`` is set. ``on_outage`` runs once,
    at the first failure. Every failure is logged (``what`` failed, the pause)."""
    backoff: Backoff | None = None
    outage = False
    while True:
        try:
            return await write()
        except StoreUnavailable as err:
            if not outage and on_outage is not None:
                await on_outage()
            outage = True
            if stop.is_set():
                raise
            backoff = backoff or Backoff(*pauses)
            delay = backoff.next_delay()
            log.warning("cannot %s yet (retrying in %.1fs): %s", what, delay, err, extra={"fields": {"job": job_id}})
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
            raise


class Outcomes:
    """Records attempts' final states for ``host``; keeps them under ``directory`` while the store is away."""

    def __init__(self, store: Store, outbox: Outbox, host: str, directory: Path,
                 initial_pause: float = 0.1, max_pause: float = 2.0) -> None:
        self.store = store
        self.outbox = outbox
        self.host = host
        self.directory = directory
        self._pauses = (initial_pause, max_pause)
        self.kept = 0  # outcomes written to disk because the store was away (for tests and logs)

    async def record(self, event: jobs_pb2.JobEvent, stop: asyncio.Event,
                     steps: Sequence[jobs_pb2.StepResult] = ()) -> bool:
        """Store the final state ``event`` reports (``steps`` - those not stored yet -, state,
        reason, and the event itself); True when it applied, False when the store refused it
        (the attempt moved on) or ``stop`` was set while the store was away (the outcome is then
        kept for ``replay``, which stores every step the event carries)."""
        kept = False

        async def keep() -> None:
            nonlocal kept
            await asyncio.to_thread(self._keep, event)
            kept = True
            self.kept += 1

        try:
            applied = await while_unavailable(lambda: self._apply(event, steps), stop, "record the end of the attempt",
                                              event.job_id, keep, self._pauses)
        except StoreUnavailable:
            log.warning("stopped before the store came back: the end of the attempt waits on disk",
                        extra={"fields": {"job": event.job_id, "attempt": event.attempt}})
            return False
        if kept:
            self._forget(event.job_id, event.attempt)
        return applied

    async def replay(self, skip: Collection[str] = ()) -> int:
        """Apply every kept outcome (but those of the jobs in ``skip``: still being recorded by
        their attempt); returns how many were applied or refused. ``StoreUnavailable`` when the
        store is still away (the rest stay kept)."""
        done = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            event = jobs_pb2.JobEvent()
            try:
                event.ParseFromString(path.read_bytes())
            except (OSError, ValueError) as err:
                log.error("unreadable kept outcome %s left alone: %s", path, err)
                continue
            if event.job_id in skip:
                continue
            try:
                applied = await self._apply(event, event.steps)
            except StoreUnavailable:
                raise
            except StoreError as err:  # not an outage: it can never apply (no such attempt any more)
                log.error("kept outcome dropped: %s", err, extra={"fields": {"job": event.job_id}})
                self._forget(event.job_id, event.attempt)
                continue
            log.info("kept outcome %s", "recorded" if applied else "refused (the attempt moved on)",
                     extra={"fields": {"job": event.job_id, "attempt": event.attempt}})
            self._forget(event.job_id, event.attempt)
            done += 1
        return done

    async def _apply(self, event: jobs_pb2.JobEvent, steps: Sequence[jobs_pb2.StepResult]) -> bool:
        for step in steps:
            await self.store.record_step(event.job_id, event.attempt, step)  # a final step never changes
        state = JobState.from_proto(event.state)
        return await announce_transition(self.store, self.outbox, self.host, event.job_id, event.attempt,
                                         state, event.reason, event)

    def _path(self, job_id: str, attempt: int) -> Path:
        return self.directory / f"{job_id}.{attempt}{SUFFIX}"

    def _keep(self, event: jobs_pb2.JobEvent) -> None:
        """Write the outcome durably: a temporary file, fsync, rename (a crash leaves the old or the new)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(event.job_id, event.attempt)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as file:
            file.write(event.SerializeToString())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _forget(self, job_id: str, attempt: int) -> None:
        self._path(job_id, attempt).unlink(missing_ok=True)
