"""An in-process node with the instant driver, in either mode.

Multi-host: ``node_settings`` builds settings with short timers;
``running_node`` opens the real parts (``serve.open_parts``: PostgreSQL,
RabbitMQ) and starts a ``Node``; ``EventLog`` subscribes to
``solstice.events`` before the node starts so no event is missed.

Single-node: ``local_node`` wires SQLite, ``LocalQueue`` and
``LocalEventBus`` (all in one file) into a ``Node``; ``LocalNode.events``
records every event.

``admin_stub`` talks to a node's AdminService over real gRPC, through its
Unix socket (the tests run as the node's user: admin without a token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc

from common.config import Seconds
from common.queue import Disposition, EventConsumer, Topology
from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.queue.local_events import LocalEventBus
from common.rpc import admin_pb2_grpc, jobs_pb2
from common.tokens import TokenIssuer
from orchestrator.admin import admin_servicer_factory
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.logstore import LogStore
from orchestrator.node import Node, NodeParts, NodeSettings
from orchestrator.node.serve import open_parts
from orchestrator.node.settings import (
    GrpcConfig,
    NodeConfig,
    TimeoutConfig,
    TimerConfig,
)
from orchestrator.node.testing import InstantDriver
from orchestrator.queue import LocalQueue
from orchestrator.queue.contract import OnDeadLetter, OnJob
from orchestrator.runnerapi import RunnerGateway
from orchestrator.secrets import open_secrets
from orchestrator.store import JobState, Store, open_store
from tests.waiting import async_wait_until


def node_settings(pg: str, amqp: str, root: Path, prefix: str, host: str = "node-a",
                  labels: tuple[str, ...] = ("lab-a",), capacity: int = 4, **overrides: object) -> NodeSettings:
    """Settings for a test node: short timers, instant driver, VMs under ``root/<host>/vms``."""
    timers = TimerConfig(heartbeat=Seconds(0.2), stale_after=Seconds(2), sweep=Seconds(0.5),
                         reconcile=Seconds(1), cancel_poll=Seconds(0.1), needs_poll=Seconds(0.1),
                         max_attempts=3, shutdown_grace=Seconds(20))
    timeouts = TimeoutConfig(prepare=Seconds(5), boot=Seconds(2), runner=Seconds(2), job=Seconds(20),
                             job_margin=Seconds(1), cancel_grace=Seconds(5), teardown=Seconds(10))
    node = NodeConfig(host=host, labels=labels, capacity=capacity)
    settings = NodeSettings(
        store_url=pg, amqp_url=amqp, queue_prefix=prefix, data_dir=root / host,
        node=node, timeouts=timeouts, timers=timers, grpc=GrpcConfig(listen="127.0.0.1:0"),
        drivers=DriverConfig(driver="instant", local=LocalConfig(state_dir=root / host / "vms")),
    )
    sections = {"node": node, "timeouts": timeouts, "timers": timers}
    replaced: dict[str, object] = {}
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            sections[section] = dataclasses.replace(sections[section], **{name: value})  # type: ignore[arg-type]
            replaced[section] = sections[section]
        else:
            replaced[key] = value
    return dataclasses.replace(settings, **replaced)  # type: ignore[arg-type]


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


def job(job_id: str, label: str = "lab-a", steps: tuple[str, ...] = ("true",), run_id: str = "run-1",
        key: str | None = None, needs: tuple[str, ...] = (), timeout: float = 0.0) -> jobs_pb2.JobRequest:
    return jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=job_id, run_id=run_id, key=key or job_id,
        name=key or job_id, runs_on=label, needs=list(needs), timeout_seconds=timeout,
        checkout=jobs_pb2.Checkout(forge="git", repo="o/r", clone_url="https://git.example.test/o/r.git",
                                   ref="refs/heads/main", sha="a" * 40),
        steps=[jobs_pb2.Step(name=f"s{i}", run=run) for i, run in enumerate(steps)],
    )


class EventLog:
    """Every JobEvent published under a prefix, in arrival order."""

    def __init__(self, amqp: str | None = None, topology: Topology | None = None) -> None:
        """Consumes from RabbitMQ when ``amqp`` is given; else something else feeds ``_on_event``."""
        self.events: list[jobs_pb2.JobEvent] = []
        if amqp is not None:
            self.consumer = EventConsumer(amqp, "tests", self._on_event, topology or Topology(), prefetch=256)

    async def _on_event(self, event: jobs_pb2.JobEvent) -> Disposition:
        self.events.append(event)
        return Disposition.ACK

    def job_states(self, job_id: str) -> list[JobState]:
        return [JobState(e.state) for e in self.events if e.job_id == job_id and not e.HasField("step")]

    async def settled(self, job_id: str, expected: list[JobState], timeout: float = 15.0) -> None:
        """Wait until ``job_states(job_id)`` is ``expected`` (events travel asynchronously)."""
        with contextlib.suppress(AssertionError):  # the assert below shows the difference
            await async_wait_until(lambda: self.job_states(job_id) == expected, timeout, what=f"{job_id} events")
        assert self.job_states(job_id) == expected

    def terminal(self, job_id: str) -> list[jobs_pb2.JobEvent]:
        return [e for e in self.events if e.job_id == job_id and not e.HasField("step")
                and JobState(e.state).terminal]


@contextlib.asynccontextmanager
async def event_log(amqp: str, pfx: str) -> AsyncIterator[EventLog]:
    log = EventLog(amqp, Topology(pfx))
    await log.consumer.start()
    try:
        yield log
    finally:
        await log.consumer.stop(grace=1.0)


@contextlib.asynccontextmanager
async def running_node(settings: NodeSettings) -> AsyncIterator[Node]:
    async with open_parts(settings) as parts, Node(parts, settings) as node:
        yield node


def driver_of(node: Node) -> InstantDriver:
    driver = node.parts.driver
    assert isinstance(driver, InstantDriver)
    return driver


def store_of(node: Node) -> Store:
    return node.parts.store


@contextlib.asynccontextmanager
async def admin_stub(node: Node) -> AsyncIterator[admin_pb2_grpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(node.admin_socket) as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel)


# -- single-node ------------------------------------------------------------------


class LocalIntake:
    """The node's ``JobPublisher`` and consumer factory over one ``LocalQueue``.

    The queue needs the scheduler's callbacks, so it exists only once the node
    starts consuming; the node publishes nothing before that.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: LocalQueue | None = None

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = 0) -> None:
        if self.queue is None:
            raise QueueError("the local queue is not started yet")
        await self.queue.publish(requests, priority)

    def consumer(self, labels: Sequence[str], on_job: OnJob, on_dead: OnDeadLetter, free: int) -> LocalQueue:
        self.queue = LocalQueue(self.path, labels, on_job, on_dead, free)
        return self.queue


class LocalNode:
    """A started single-node ``Node`` and what the test inspects."""

    def __init__(self, node: Node, intake: LocalIntake, events: EventLog) -> None:
        self.node = node
        self.intake = intake
        self.events = events

    @property
    def store(self) -> Store:
        return self.node.parts.store

    @property
    def driver(self) -> InstantDriver:
        return driver_of(self.node)

    async def publish(self, *requests: jobs_pb2.JobRequest) -> None:
        await self.intake.publish(list(requests))


def local_settings(root: Path, host: str = "node-a", labels: tuple[str, ...] = ("lab-a",), capacity: int = 4,
                   **overrides: object) -> NodeSettings:
    """``node_settings`` for a single node whose state lives under ``root``."""
    return node_settings(f"sqlite://{root}/state.db", "amqp://unused/", root, "", host=host, labels=labels,
                         capacity=capacity, **overrides)


@contextlib.asynccontextmanager
async def local_node(settings: NodeSettings, driver: InstantDriver | None = None,
                     wrap_events: Callable[[EventPublisher], EventPublisher] | None = None,
                     secrets: bool = False) -> AsyncIterator[LocalNode]:
    """A single node on SQLite + ``LocalQueue`` + ``LocalEventBus`` (one file), instant driver.

    ``wrap_events`` puts something between the node and the bus (a broker outage);
    ``secrets`` opens the secret store ``settings.secrets`` names (else the node has none).
    """
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True)
    driver = driver or InstantDriver(settings.drivers.local.state_dir, settings.drivers.local.labels)
    events = EventLog()
    bus = LocalEventBus(root / "queue.db")
    bus.subscribe("tests", events._on_event, prefetch=256)
    intake = LocalIntake(root / "queue.db")
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings.store_url,
                                                           host_stale_after=settings.timers.stale_after))
        await stack.enter_async_context(bus)
        logstore = await stack.enter_async_context(LogStore(root / "logs"))
        stack.push_async_callback(driver.aclose)
        gateway = RunnerGateway(logstore, TokenIssuer(os.urandom(32), 3600.0), heartbeat_interval=0.2)
        events_out: EventPublisher = wrap_events(bus) if wrap_events is not None else bus
        broker = (await stack.enter_async_context(open_secrets(settings.secrets, store, settings.node.host))
                  if secrets else None)
        parts = NodeParts(store=store, driver=driver, gateway=gateway, publisher=intake, events=events_out,
                          consumer_factory=intake.consumer, admin=admin_servicer_factory, secrets=broker)
        node = await stack.enter_async_context(Node(parts, settings))
        yield LocalNode(node, intake, events)
