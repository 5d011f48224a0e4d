"""Hosts stay alive in the store, and the jobs of dead hosts run again.

* ``heartbeat_loop``: this node's heartbeat on a timer; the reply tells it
  whether an operator drained it.
* ``sweep_loop``: any live node takes the jobs of hosts whose heartbeat
  lapsed (``Store.requeue_lapsed``; concurrent sweeps change each job once)
  and queues the new attempts through its outbox (requeue.py); a job out of
  attempts ends ``errored``. It also takes over the outbox rows such hosts
  left unpublished.

After this node could not reach the store (its heartbeats failed), its sweep
trusts other hosts' heartbeat ages again only once its own have gone through
for ``stale_after`` (``StoreHealth``): a store outage stops every host's
heartbeats, and sweeping right after it would take every running job away.

A store or broker outage is logged and retried on the next tick; these loops
only end when cancelled (the supervisor treats any other end as fatal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from common.queue.errors import QueueError
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import requeue_lapsed
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)


class StoreHealth:
    """Whether this node's heartbeats have reached the store for long enough to judge others'."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._back_since: float | None = float("-inf")  # None while heartbeats fail

    def succeeded(self) -> None:
        if self._back_since is None:
            self._back_since = self._clock()
            log.info("the store answers heartbeats again")

    def failed(self) -> None:
        self._back_since = None

    def steady_for(self, seconds: float) -> bool:
        """Every heartbeat of the last ``seconds`` s went through."""
        return self._back_since is not None and self._clock() - self._back_since >= seconds


async def heartbeat_loop(store: Store, host: str, interval: float, running: Callable[[], int],
                         on_draining: Callable[[bool], None], health: StoreHealth | None = None) -> None:
    """Heartbeat every ``interval`` s; report the drain flag through ``on_draining``."""
    health = health or StoreHealth()
    while True:
        try:
            record = await store.heartbeat(host, running())
        except StoreError as err:
            health.failed()
            log.error("heartbeat failed: %s", err)
        else:
            health.succeeded()
            on_draining(record.draining)
        await asyncio.sleep(interval)


async def sweep_loop(store: Store, outbox: Outbox, stale_after: float, max_attempts: int, interval: float,
                     health: StoreHealth | None = None, own: Callable[[], Awaitable[object]] | None = None) -> None:
    """Every ``interval`` s: ``own()`` (this host's lost attempts), forget finished jobs' clone
    credentials, then requeue the jobs of lapsed hosts."""
    health = health or StoreHealth()
    while True:
        await asyncio.sleep(interval)
        try:
            if own is not None:
                await own()
            await store.purge_clone_credentials()
            if not health.steady_for(stale_after):
                log.info("lapsed-host sweep skipped: this node's heartbeats reached the store again less than "
                         "%gs ago", stale_after)
                continue
            await requeue_lapsed(store, outbox, stale_after, max_attempts)
            await outbox.adopt(stale_after)  # what a dead host stored but never published
        except (StoreError, QueueError) as err:
            log.error("lapsed-host sweep failed: %s", err)
