"""Hosts stay alive in the store, and the jobs of dead hosts run again.

* ``heartbeat_loop``: this node's heartbeat on a timer; the reply tells it
  whether an operator drained it.
* ``sweep_loop``: any live node takes the jobs of hosts whose heartbeat
  lapsed (``Store.requeue_lapsed``; concurrent sweeps change each job once)
  and queues the new attempts through its outbox (requeue.py); a job out of
  attempts ends ``errored``. It also takes over the outbox rows such hosts
  left unpublished.

A store or broker outage is logged and retried on the next tick; these loops
only end when cancelled (the supervisor treats any other end as fatal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from common.queue.errors import QueueError
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import requeue_lapsed
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)


async def heartbeat_loop(store: Store, host: str, interval: float, running: Callable[[], int],
                         on_draining: Callable[[bool], None]) -> None:
    """Heartbeat every ``interval`` s; report the drain flag through ``on_draining``."""
    while True:
        try:
            record = await store.heartbeat(host, running())
        except StoreError as err:
            log.error("heartbeat failed: %s", err)
        else:
            on_draining(record.draining)
        await asyncio.sleep(interval)


async def sweep_loop(store: Store, outbox: Outbox, stale_after: float, max_attempts: int, interval: float) -> None:
    """Requeue the jobs of lapsed hosts every ``interval`` s."""
    while True:
        await asyncio.sleep(interval)
        try:
            await requeue_lapsed(store, outbox, stale_after, max_attempts)
            await outbox.adopt(stale_after)  # what a dead host stored but never published
        except (StoreError, QueueError) as err:
            log.error("lapsed-host sweep failed: %s", err)
