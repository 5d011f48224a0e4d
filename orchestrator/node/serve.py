"""Wiring for ``solstice-orchestrator serve``: open every part from settings, run the node.

``open_parts`` is an async context manager that opens (in order) the state
store, the job and event publishers, the log store, the VM driver, the
secret store and the log archive, and closes them in reverse order. ``serve`` runs a node until SIGTERM/SIGINT or
a drained exit, and returns the process exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence

from common.files import private_dir
from common.metrics.http import MetricsEndpoint, serve_metrics
from common.queue.events import RabbitEventPublisher
from common.queue.publisher import RabbitJobPublisher
from common.queue.topology import Topology
from common.tokens import TokenIssuer
from orchestrator.admin import admin_servicer_factory
from orchestrator.drivers.registry import attach_store, make_driver
from orchestrator.artifacts.archive import ArtifactArchive
from orchestrator.caches.wiring import cache_options
from orchestrator.drivers.registry import disk_caches
from orchestrator.logstore import LogStore
from orchestrator.logstore.service import open_node_logs
from orchestrator.metrics import store_families
from orchestrator.node.node import Node, NodeError, NodeParts
from orchestrator.node.settings import NodeSettings
from orchestrator.queue import RabbitJobConsumer
from orchestrator.queue.contract import OnDeadLetter, OnJob
from orchestrator.runnerapi import RunnerGateway
from orchestrator.secrets import open_secrets
from orchestrator.store import Store, open_store

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_parts(settings: NodeSettings) -> AsyncIterator[NodeParts]:
    """Every collaborator of a multi-host node, opened; closed in reverse order on exit."""
    if settings.drivers.driver in ("instant", "instant-inprocess"):
        import orchestrator.node.testing  # noqa: F401 - registers the instant drivers

    topology = Topology(settings.queue_prefix)
    private_dir(settings.data_dir)  # logs and the admin socket: this user's only
    driver = make_driver(settings.drivers)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings.store_url, host_stale_after=settings.timers.stale_after))
        timeout = float(settings.publish_timeout)
        publisher = await stack.enter_async_context(RabbitJobPublisher(settings.amqp_url, topology, timeout))
        events = await stack.enter_async_context(RabbitEventPublisher(settings.amqp_url, topology, timeout))
        logstore = await stack.enter_async_context(LogStore(settings.data_dir / "logs"))
        stack.push_async_callback(driver.aclose)
        attach_store(driver, store, settings.node.host)  # bhyve: guest address leases
        gateway = RunnerGateway(logstore, TokenIssuer(settings.token_key(), settings.grpc.token_ttl),
                                artifact_limits=settings.artifacts.limits(),
                                **cache_options(settings))
        gateway.disk_caches = disk_caches(driver)  # bhyve: caches are cloned disks (orchestrator/caches/zfs.py)
        attach = getattr(driver, "attach_gateway", None)
        if attach is not None:  # the instant driver's in-process fake runner calls it directly
            attach(gateway)

        def consumer(labels: Sequence[str], on_job: OnJob, on_dead: OnDeadLetter, free: int) -> RabbitJobConsumer:
            return RabbitJobConsumer(settings.amqp_url, labels, on_job, on_dead, free, topology)

        secrets = await stack.enter_async_context(open_secrets(settings.secrets, store, settings.node.host))
        logs = await stack.enter_async_context(open_node_logs(settings.logs, store, logstore, settings.node.host))
        if logs.archive is not None:  # a cluster: artifacts are read from any node, as logs are
            gateway.artifacts.archive = ArtifactArchive(store.backend)  # type: ignore[attr-defined]
        yield NodeParts(store=store, driver=driver, gateway=gateway, publisher=publisher, events=events,
                        consumer_factory=consumer, admin=admin_servicer_factory, secrets=secrets, logs=logs)


@contextlib.asynccontextmanager
async def metrics_listener(settings: NodeSettings, store: Store) -> AsyncIterator[str]:
    """``/metrics`` on ``metrics.listen`` for the block (yields its URL, "" when off)."""
    if not settings.metrics.listen:
        yield ""
        return
    host, port = settings.metrics.split()
    async with serve_metrics(MetricsEndpoint([store_families(store)]), host, port) as url:
        yield url


async def serve(settings: NodeSettings) -> int:
    """Run one node until SIGTERM/SIGINT (graceful: exit 0) or a drained exit."""
    loop = asyncio.get_running_loop()
    async with open_parts(settings) as parts, metrics_listener(settings, parts.store) as metrics_url:
        node = Node(parts, settings)
        async with node:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, node.stop)
            try:
                admin = node.admin_socket + (f" and {node.admin.tcp_address} (TLS)" if node.admin and
                                             node.admin.tcp_address else "")
                print(f"solstice-orchestrator: node {node.host} serving on {node.address} (runners), "
                      f"AdminService on {admin}" + (f", metrics on {metrics_url}" if metrics_url else ""), flush=True)
                await node.wait()
            except NodeError as err:
                log.error("%s", err)
                raise
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
    return 0
