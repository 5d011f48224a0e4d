"""The node supervisor: start the parts, run the named loops, stop in order.

    async with Node(parts, settings) as node:      # serving
        await node.wait()                          # until stop(), drained exit, or a loop dies

Start-up: the runners' gRPC server (RunnerService only) -> AdminService on
its management listeners (``admin.AdminServer``: a 0600 Unix socket, TCP
with TLS if configured) -> take back the attempts this host's previous
process held (in the store, their requests in the outbox) -> register ->
reconcile orphan VMs -> start consuming (which declares the label queues) ->
start the outbox, which publishes what the previous process left and the
attempts taken back (only now: on a fresh broker the requests are routable
instead of dead-lettered). Then named long-lived tasks run: ``heartbeat``,
``sweeper``, ``reconciler``, ``store watcher``, ``free slots``. If one of
them (or the outbox) ends, the node fails loudly ("X stopped early").

Shutdown (``stop()``, SIGTERM, or drained with ``exit_when_drained``): stop
taking work (free slots 0; held deliveries are requeued), abort attempts
that are not running yet, let running jobs finish (``timers.shutdown_grace``),
requeue whatever is left with ``Store.requeue_host`` (through the outbox), then
stop the consumer, the loops and the server. Heartbeats continue until the last job is done, so no
other node takes running jobs away meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from common import metrics
from common.errors import SolsticeError
from common.lifecycle import first_to_end
from common.rpc.admin_pb2_grpc import AdminServiceServicer
from common.queue.events import EventPublisher
from common.queue.publisher import JobPublisher
from orchestrator.admin.listeners import AdminServer
from orchestrator.drivers.base import Driver
from orchestrator.logstore.service import NodeLogs
from orchestrator.metrics import TimedDriver
from orchestrator.node.capacity import Capacity
from orchestrator.node.heartbeat import StoreHealth, heartbeat_loop, sweep_loop
from orchestrator.node.lifecycle import NodeServices
from orchestrator.node.outbox import Outbox
from orchestrator.node.outcomes import Outcomes
from orchestrator.node.reconcile import reconcile_loop, reconcile_once
from orchestrator.node.requeue import finish_lost, take_back_own
from orchestrator.node.scheduler import Scheduler
from orchestrator.node.settings import NodeSettings
from orchestrator.operators import OperatorTokens
from orchestrator.queue.contract import JobConsumer, OnDeadLetter, OnJob
from orchestrator.runnerapi import RunnerGateway, RunnerServer
from orchestrator.secrets import SecretBroker
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[Sequence[str], OnJob, OnDeadLetter, int], JobConsumer]
AdminFactory = Callable[["Node"], AdminServiceServicer]


class NodeError(SolsticeError):
    """The node cannot start, or one of its long-lived tasks stopped."""


def _catalog_labels(settings: NodeSettings) -> tuple[str, ...]:
    """The labels the configured driver's catalog names (bhyve or qemu images; local/instant labels)."""
    drivers = settings.drivers
    if drivers.driver == "bhyve":
        return tuple(drivers.bhyve.images)
    if drivers.driver == "qemu":
        return tuple(drivers.qemu.images)
    return tuple(drivers.local.labels)


@dataclass(frozen=True)
class NodeParts:
    """The node's collaborators, opened by the caller (``serve.open_parts`` or a test)."""

    store: Store
    driver: Driver
    gateway: RunnerGateway
    publisher: JobPublisher
    events: EventPublisher
    consumer_factory: ConsumerFactory  # (labels, on_job, on_dead_letter, free_slots) -> consumer
    admin: AdminFactory | None = None
    secrets: SecretBroker | None = None  # None: jobs that declare secrets are refused them
    logs: NodeLogs | None = None  # None: logs are read from this node's files only, never archived


class Node:
    """One orchestrator node. Lifetime: ``async with`` (or ``start``/``close``) once."""

    def __init__(self, parts: NodeParts, settings: NodeSettings) -> None:
        self.parts = parts
        self.settings = settings
        self.host = settings.node.host
        self.labels = self._labels()
        # One setting for both sides: runners learn in GetJob how long the node waits for them.
        parts.gateway.runner_patience = float(settings.timeouts.runner_silence)
        self.capacity = Capacity(settings.node.capacity, settings.node.label_limits, self._slots_changed)
        self.scheduler: Scheduler | None = None
        self.server: RunnerServer | None = None
        self.admin: AdminServer | None = None
        self.consumer: JobConsumer | None = None
        self.draining = False
        self._stop = asyncio.Event()
        self._slots_dirty = asyncio.Event()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._state = "new"
        # Attempts announce through it, so a broker outage never stalls a job; requeues and
        # retries queue their new attempts through it, so none is lost to a failed publish.
        self.outbox = Outbox(parts.events, parts.publisher, durable=(parts.store, self.host))
        # Final states the store could not take yet wait here, on disk.
        self.outcomes = Outcomes(parts.store, self.outbox, self.host, settings.data_dir / "outcomes")
        self.store_health = StoreHealth()
        self._outbox_task: asyncio.Task[None] | None = None

    def _labels(self) -> tuple[str, ...]:
        labels = self.settings.node.labels or _catalog_labels(self.settings)
        if not labels:
            raise NodeError(f"node.labels is empty and the {self.parts.driver.name} driver's catalog names no "
                            "label: name the runs_on labels this node serves")
        unserved = [label for label in labels if not self.parts.driver.serves(label)]
        if unserved:
            raise NodeError(f"the {self.parts.driver.name} driver cannot run label(s) {', '.join(unserved)}")
        return tuple(labels)

    @property
    def address(self) -> str:
        """The runners' gRPC address actually bound (RunnerService only)."""
        if self.server is None:
            raise NodeError("the node is not started")
        return self.server.address

    @property
    def admin_socket(self) -> str:
        """``unix:<path>`` of AdminService's local socket (what ``ciadm`` dials on this host)."""
        if self.admin is None:
            raise NodeError("the node serves no AdminService")
        return f"unix:{self.admin.socket_path}"

    # -- start --------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._state != "new":
            raise NodeError(f"the node was already {self._state}")
        self._state = "starting"
        s, p = self.settings, self.parts
        host, port = s.grpc.split()
        self.server = RunnerServer(p.gateway, host, port)
        await self.server.start()
        try:
            if p.admin is not None:
                self.admin = AdminServer(p.admin(self), OperatorTokens(p.store), s.admin, s.data_dir)
                await self.admin.start()
            await self._start_rest()
        except BaseException:
            if p.logs is not None:
                await p.logs.stop(0.0)
            await self._stop_loops()
            if self.consumer is not None:
                await self.consumer.stop(grace=0.0)
            if self.admin is not None:
                await self.admin.stop(0)
            await self.server.stop(0)
            await self._stop_outbox(0.0)
            raise

    async def _start_rest(self) -> None:
        s, p = self.settings, self.parts
        assert self.server is not None
        # Before anything is announced: what the previous process left goes out first.
        await self.outbox.recover()
        services = NodeServices(
            host=self.host, store=p.store, driver=TimedDriver(p.driver), gateway=p.gateway, events=self.outbox,
            timeouts=s.timeouts, runner_address=s.grpc.advertise or self.server.address, outcomes=self.outcomes,
            secrets=p.secrets, logs=s.logs, log_done=p.logs.finished if p.logs is not None else None,
        )
        self.scheduler = Scheduler(services, self.capacity, p.publisher, max_waiting=s.node.max_waiting,
                                   needs_poll=s.timers.needs_poll, on_change=self._slots_changed,
                                   needs_wait=s.timers.needs_wait)
        # The ends the previous process could not record are recorded; what else it held is requeued.
        await self.outcomes.replay()
        await take_back_own(p.store, self.outbox, self.host, s.timers.max_attempts, "restarted")
        host = await p.store.register_host(self.host, self.labels, s.node.capacity)
        metrics.slots(self.capacity.total, self.capacity.total - self.capacity.free())
        self.draining = host.draining
        self.scheduler.set_accepting(not host.draining)
        await reconcile_once(p.store, p.driver, self.host, self.scheduler.local_vms, p.gateway.caches)
        if p.logs is not None:  # before any attempt runs: what an earlier process left is shipped first
            await p.logs.start()
            self._loops.update(p.logs.tasks)
        self.consumer = p.consumer_factory(self.labels, self.scheduler.on_job, self.scheduler.on_dead_letter,
                                           self.scheduler.wanted_free_slots())
        await self.consumer.start()
        # Publishing only now: the consumer has declared the label queues, so on a
        # fresh broker the requests taken back are routable instead of dead-lettered.
        self._outbox_task = asyncio.create_task(self.outbox.run(), name="outbox")
        t = s.timers
        scheduler = self.scheduler
        self._spawn("heartbeat", heartbeat_loop(p.store, self.host, t.heartbeat, lambda: len(scheduler.active),
                                                self.set_draining, self.store_health))
        self._spawn("sweeper", sweep_loop(
            p.store, self.outbox, t.stale_after, t.max_attempts, t.sweep, self.store_health,
            own=lambda: finish_lost(p.store, self.outbox, self.outcomes, self.host, scheduler.live_jobs,
                                    t.max_attempts, settled=t.stale_after)))
        self._spawn("reconciler", reconcile_loop(p.store, p.driver, self.host, self.scheduler.local_vms, t.reconcile,
                                                 p.gateway.caches))
        self._spawn("store watcher", self._watch_store(t.cancel_poll))
        self._spawn("free slots", self._sync_slots())
        self._state = "started"
        fields = {"host": self.host, "labels": ",".join(self.labels), "capacity": s.node.capacity,
                  "grpc": self.server.address}
        if self.admin is not None:
            fields["admin"] = str(self.admin.socket_path)
            if self.admin.tcp_address:
                fields["admin_tls"] = self.admin.tcp_address
        log.info("node started", extra={"fields": fields})

    def _spawn(self, name: str, coro: Awaitable[None]) -> None:
        self._loops[name] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]

    # -- loops owned by the node ------------------------------------------------------
    def _slots_changed(self) -> None:
        metrics.slots(self.capacity.total, self.capacity.total - self.capacity.free())
        self._slots_dirty.set()

    async def _sync_slots(self) -> None:
        """Keep the consumer's free slots and paused labels as the scheduler wants them (coalesced)."""
        applied: int | None = None
        paused: frozenset[str] = frozenset()
        while True:
            await self._slots_dirty.wait()
            self._slots_dirty.clear()
            assert self.scheduler is not None and self.consumer is not None
            full = self.scheduler.paused_labels()
            if full != paused:
                await self.consumer.set_paused_labels(full)
                paused = full
            wanted = self.scheduler.wanted_free_slots()
            if wanted != applied:
                await self.consumer.set_free_slots(wanted)
                applied = wanted
            self._check_drained()

    async def _watch_store(self, interval: float) -> None:
        assert self.scheduler is not None
        while True:
            await asyncio.sleep(interval)
            try:
                await self.scheduler.watch_store_once()
            except StoreError as err:
                log.error("store watch failed: %s", err)

    @property
    def driver_name(self) -> str:
        return self.parts.driver.name

    def cancel_local(self, job_id: str, reason: str) -> bool:
        """Cancel ``job_id`` if it runs here (the store already records the cancel)."""
        return self.scheduler is not None and self.scheduler.cancel_local(job_id, reason, recorded=True)

    def hurry(self) -> None:
        """Cut a shutdown's grace short: running jobs are aborted and requeued at once."""
        if self.scheduler is not None:
            self.scheduler.hurry()

    def set_draining(self, draining: bool) -> None:
        """Apply the host's drain flag (from a heartbeat reply or AdminService.Drain)."""
        if self.scheduler is None:
            return
        if draining != self.draining:
            log.info("node %s", "draining" if draining else "undrained", extra={"fields": {"host": self.host}})
        self.draining = draining
        if not self.scheduler.stopping.is_set():
            self.scheduler.set_accepting(not draining)
        self._check_drained()

    def _check_drained(self) -> None:
        if (self.draining and self.settings.node.exit_when_drained and self.scheduler is not None
                and self.scheduler.idle):
            log.info("drained: exiting", extra={"fields": {"host": self.host}})
            self._stop.set()

    # -- control ------------------------------------------------------------------
    def stop(self) -> None:
        """Ask for a graceful shutdown (safe from a signal handler)."""
        self._stop.set()

    async def wait(self) -> None:
        """Until ``stop()``/drained exit; raises ``NodeError`` when a long-lived task ends first."""
        loops: dict[str, asyncio.Task[None]] = dict(self._loops)
        if self._outbox_task is not None:
            loops["outbox"] = self._outbox_task
        # The loops are only watched: close() stops them after the jobs (heartbeats go on meanwhile).
        ended = await first_to_end({"stop": self._stop.wait(), **loops}, keep=loops)
        if ended.name != "stop":
            raise NodeError(ended.message)

    async def close(self) -> None:
        """Graceful shutdown (see the module docstring); idempotent."""
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closed"
        s, p = self.settings, self.parts
        try:
            if self.scheduler is not None:
                self.scheduler.stop_intake()
                # Paused, not stopped yet: in single-node mode the consumer is also the
                # publisher the requeue below needs.
                if self.consumer is not None:
                    await self.consumer.set_free_slots(0)
                await self.scheduler.shutdown(s.timers.shutdown_grace)
                try:
                    await take_back_own(p.store, self.outbox, self.host, s.timers.max_attempts, "shut down")
                except SolsticeError as err:
                    log.error("could not requeue this node's unfinished jobs: %s", err)
                # What this node must publish leaves before the consumer stops: in single-node mode
                # the local queue is also the publisher of the requests just taken back.
                await self._stop_outbox()
                if self.consumer is not None:
                    await self.consumer.stop(grace=5.0)
        finally:
            if p.logs is not None:
                await p.logs.stop()  # the finished attempts' logs reach the archive first (bounded)
            await self._stop_loops()
            if self.admin is not None:
                await self.admin.stop()
            if self.server is not None:
                await self.server.stop()
            await self._stop_outbox()
        log.info("node stopped", extra={"fields": {"host": self.host}})

    async def _stop_outbox(self, grace: float = 10.0) -> None:
        task, self._outbox_task = self._outbox_task, None
        if task is None:
            return
        if not task.done() and not await self.outbox.flush(grace):
            log.error("%d outbox messages were not published before shutdown (they wait in the store)",
                      self.outbox.pending)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _stop_loops(self) -> None:
        for task in self._loops.values():
            task.cancel()
        await asyncio.gather(*self._loops.values(), return_exceptions=True)
