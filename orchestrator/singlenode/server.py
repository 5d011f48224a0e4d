"""``solstice serve``: the integration and an orchestrator node in one process.

Start-up, in order (each part is closed in reverse order on the way out):

1. the job queue (``LocalQueue`` in ``<data_dir>/queue.sqlite``): webhooks and
   ``ciadm submit`` publish into it from the first moment;
2. the integration (webhook service, forge clients, dedupe store);
3. the HTTP server (``--listen``): ``/healthz`` answers 503 and the dashboard's
   pages 503 until step 6; ``/metrics`` answers from the start;
4. the event bus (``LocalEventBus`` in ``events.sqlite``) with the integration's
   reporter subscribed to ``job.#``;
5. the state store (SQLite ``state.sqlite``), the log store, the VM driver,
   the secret store (built in: its keyring ``secrets.key`` is made on first start);
6. the node: gRPC for runners on ``--grpc`` (RunnerService only), AdminService
   on ``<data_dir>/admin.sock`` (and ``admin.listen`` with TLS), consuming the queue.

The data directory is 0700 and its databases 0600: they hold job logs and
clone credentials that no other user of the machine may read.

Then three owned tasks are watched: a signal (SIGINT/SIGTERM: graceful stop),
the node's own loops (``Node.wait`` raises when one dies) and the
integration's dedupe purge. Whichever ends first ends the process; the node
then stops taking jobs, gives running ones ``shutdown_grace`` and requeues
the rest into the queue file, so a restart picks them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from common.errors import SolsticeError
from common.files import FileModeError, private_dir, private_file
from common.lifecycle import first_to_end
from common.metrics.http import MetricsEndpoint
from common.queue.local_events import LocalEventBus
from common.tokens import TokenIssuer
from dashboard.actions import StoreActions
from dashboard.app import Backing as DashboardBacking
from dashboard.app import Dashboard
from dashboard.links import ForgeLinks, github_web_url
from dashboard.logsource import LocalLogs
from integration.cancel import CancelRequest, CommitRetryRequest, RetryRequest
from integration.events import Forge
from integration.httpserver import GuardedSite, app_runner
from integration.runtime import Integration
from integration.schedules import schedule_rows
from integration.webhooks import FORGE_NAMES, SECRET_SETTINGS
from orchestrator.admin import admin_servicer_factory
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.caches.wiring import cache_options
from orchestrator.drivers.base import Driver
from orchestrator.drivers.registry import attach_store, disk_caches, make_driver
from orchestrator.logstore import LogStore
from orchestrator.logstore.service import open_node_logs
from orchestrator.metrics import store_families
from orchestrator.node.node import Node, NodeParts
from orchestrator.runnerapi import RunnerGateway
from orchestrator.secrets import open_secrets
from orchestrator.singlenode.cancel import NodeCanceller, NodeRetrier
from orchestrator.singlenode.queue import SingleNodeQueue
from orchestrator.singlenode.routing import LabelRouter
from orchestrator.singlenode.settings import ServeSettings, split_address
from orchestrator.singlenode.web import Backing, JobPages, make_app
from orchestrator.store import Store, open_store

log = logging.getLogger(__name__)
# Made 0600 before SQLite first opens them (it gives -wal/-shm files the same mode).
STATE_FILES = ("queue.sqlite", "events.sqlite", "state.sqlite", "integration.sqlite")


class ServeError(SolsticeError):
    """The single node could not start, or one of its parts stopped early."""


class _Late:
    """The integration's canceller and retrier, which can only act once the node exists."""

    def __init__(self) -> None:
        self.canceller: NodeCanceller | None = None
        self.retrier: NodeRetrier | None = None

    async def cancel(self, request: CancelRequest) -> int:
        if self.canceller is None:
            raise ServeError("the orchestrator is starting; cannot cancel jobs yet")
        return await self.canceller.cancel(request)

    async def retry(self, request: RetryRequest) -> bool:
        if self.retrier is None:
            raise ServeError("the orchestrator is starting; cannot re-run jobs yet")
        return await self.retrier.retry(request)

    async def retry_commit(self, request: CommitRetryRequest) -> int:
        if self.retrier is None:
            raise ServeError("the orchestrator is starting; cannot re-run jobs yet")
        return await self.retrier.retry_commit(request)


async def serve(settings: ServeSettings, say: Callable[[str], None] = print,
                stop: asyncio.Event | None = None) -> int:
    """Run the single node until SIGINT/SIGTERM (or ``stop`` is set); returns the exit status."""
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()  # the second one: no more grace

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await _run(settings, say, stop, hurry)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    say("solstice: stopped")
    return 0


async def _run(settings: ServeSettings, say: Callable[[str], None], stop: asyncio.Event,
               hurry: asyncio.Event) -> None:
    data = settings.data_dir
    try:
        private_dir(data)
        for name in STATE_FILES:
            private_file(data / name)
    except FileModeError as err:
        raise ServeError(f"cannot prepare the data directory {data}: {err}") from err
    pages = JobPages()
    dashboard = Dashboard(settings.dashboard, settings.http_url())
    metrics = MetricsEndpoint()
    late = _Late()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_exclusive(data))
        # Bound first: a busy port fails before anything else opens, and port 0
        # (tests) becomes a real one that the forge links can name.
        sock = _bind(settings.listen)
        stack.callback(sock.close)
        _check_free(settings.grpc)
        port = sock.getsockname()[1]
        settings = dataclasses.replace(settings, listen=f"{split_address(settings.listen, 'listen')[0]}:{port}")
        node_settings = settings.node_settings()
        queue = await stack.enter_async_context(
            SingleNodeQueue(data / "queue.sqlite", node_settings.node.labels, settings.every_label))
        integration = await stack.enter_async_context(
            Integration(settings.integration_settings(), queue, late, retrier=late))
        runner = app_runner(make_app(integration, pages, dashboard, metrics), settings.http, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await GuardedSite(runner, settings.http, sock=sock).start()
        events = LocalEventBus(data / "events.sqlite")
        events.subscribe("integration", integration.reporter.handle, bindings=("job.#",))
        if integration.greenness is not None:
            events.subscribe("greenness", integration.greenness.recorder.handle, bindings=("job.#",))
            dashboard.add_column(integration.greenness.column)
        await stack.enter_async_context(events)
        store = await stack.enter_async_context(
            open_store(node_settings.store_url, host_stale_after=node_settings.timers.stale_after))
        logstore = await stack.enter_async_context(LogStore(data / "logs"))
        driver = _make_driver(settings)
        stack.push_async_callback(driver.aclose)
        attach_store(driver, store, node_settings.node.host)  # bhyve: guest address leases
        gateway = RunnerGateway(logstore, TokenIssuer(node_settings.token_key(), node_settings.grpc.token_ttl),
                                artifact_limits=node_settings.artifacts.limits(),
                                **cache_options(node_settings))
        gateway.disk_caches = disk_caches(driver)  # bhyve: caches are cloned disks (orchestrator/caches/zfs.py)
        secrets = await stack.enter_async_context(
            open_secrets(node_settings.secrets, store, node_settings.node.host, default_key_file=data / "secrets.key"))
        logs = await stack.enter_async_context(
            open_node_logs(node_settings.logs, store, logstore, node_settings.node.host))
        parts = NodeParts(store=store, driver=driver, gateway=gateway, publisher=queue, events=events,
                          consumer_factory=queue.intake, admin=admin_servicer_factory, secrets=secrets, logs=logs,
                          schedules=schedule_rows(integration.store))
        node = Node(parts, node_settings)
        # Owned before the node is entered, so it still listens while the node closes.
        hurrier = asyncio.create_task(_hurry_on(hurry, node, say), name="second interrupt")
        stack.push_async_callback(_cancelled, hurrier)
        await stack.enter_async_context(node)
        late.canceller = NodeCanceller(store, node.outbox, node)
        late.retrier = NodeRetrier(store, node.outbox)
        labels_note = "every runs_on label" if settings.every_label else ", ".join(node.labels)
        if settings.label_drivers:
            routes = ", ".join(f"{label} -> {name}" for label, name in sorted(settings.label_drivers.items()))
            labels_note += f" ({routes}, the rest -> {settings.drivers.driver})"
        pages.attach(Backing(store, logstore, node.host, settings.drivers.driver, labels_note,
                             dict(settings.label_drivers), reader=logs.reader))
        dashboard.attach(dataclasses.replace(_dashboard_backing(settings, store, logstore, queue, node, labels_note),
                                 schedules=schedule_rows(integration.store)))
        metrics.add_source(store_families(store))
        pages.ready = True
        stack.callback(setattr, pages, "ready", False)  # unwinds first: /healthz says 503 while stopping
        _announce(settings, node, driver.name, labels_note, say)
        await _supervise(node, integration, stop)
        say(f"solstice: stopping (running jobs get {settings.shutdown_grace:g}s, then are requeued; "
            "Ctrl-C again to stop at once)")


def _dashboard_backing(settings: ServeSettings, store: Store, logstore: LogStore, queue: SingleNodeQueue,
                       node: Node, labels_note: str) -> DashboardBacking:
    """The dashboard of the single node: every log is local, its buttons act through this node."""
    web = {"github": github_web_url(settings.github.api_url)}
    if settings.forgejo.url:
        web["forgejo"] = settings.forgejo.url
    routes = dict(settings.label_drivers)

    def driver_of(host: str, runs_on: str) -> str:
        if host != node.host:
            return ""
        return f"{routes.get(runs_on, settings.drivers.driver)} (serves {labels_note})"

    # The node's outbox: the dashboard's events and requests keep their order with the node's own.
    actions = StoreActions(store, node.outbox, node)
    return DashboardBacking(store, LocalLogs(logstore), actions, ForgeLinks(web), driver_of,
                            artifacts=ArtifactStore(logstore.root))


async def _hurry_on(hurry: asyncio.Event, node: Node, say: Callable[[str], None]) -> None:
    await hurry.wait()
    say("solstice: stopping at once (running jobs are stopped and requeued)")
    node.hurry()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@contextlib.contextmanager
def _exclusive(data: Path) -> Iterator[None]:
    """Hold ``<data>/serve.lock``: two processes on one set of SQLite files would hand out jobs twice."""
    path = data / "serve.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise ServeError(f"cannot open {path}: {err.strerror}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ServeError(f"another solstice serve (pid {holder}) is using the data directory {data}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _bind(listen: str, what: str = "HTTP", setting: str = "listen") -> socket.socket:
    host, port = split_address(listen, setting)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as err:
        raise ServeError(f"cannot listen on {listen} ({what}): {err}") from err
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {listen} ({what}): {err.strerror}") from err
    return sock


def _check_free(grpc_listen: str) -> None:
    """Fail with our one line if the gRPC address is taken, before anything else opens.

    The gRPC server binds it later (in the node); when that fails, the gRPC
    core writes its own line to stderr first, which a user should not have to
    read. Binding the same way it does (SO_REUSEADDR, no SO_REUSEPORT) tells
    the same answer; only a port taken in the instant between is left to it.
    """
    if split_address(grpc_listen, "grpc")[1] == 0:
        return  # any free port will do
    _bind(grpc_listen, "gRPC", "grpc").close()


def _make_driver(settings: ServeSettings) -> Driver:
    """The node's driver: the configured one, or a router when labels map to other drivers."""
    configs = settings.driver_configs()
    if "instant" in configs:
        import orchestrator.node.testing  # noqa: F401 - registers the instant driver (tests, benchmarks)
    if not settings.label_drivers:
        return make_driver(configs[settings.drivers.driver])
    children = {name: make_driver(config) for name, config in configs.items()}
    default = children[settings.drivers.driver]
    return LabelRouter(default, {label: children[name] for label, name in settings.label_drivers.items()})


def _announce(settings: ServeSettings, node: Node, driver: str, labels: str, say: Callable[[str], None]) -> None:
    url = settings.http_url()
    say(f"solstice: single node {node.host} ready; data in {settings.data_dir}")
    say(f"  driver:    {driver}, serving {labels}")
    say(f"  webhooks:  {url}/webhooks/github  {url}/webhooks/forgejo  (HTTP on {settings.listen})")
    say(f"  forges:    {_forge_state(Forge.GITHUB, settings.github.enabled)}, "
        f"{_forge_state(Forge.FORGEJO, settings.forgejo.enabled)}")
    say(f"  dashboard: {url}/  (metrics: {url}/metrics)")
    say(f"  job pages: {url}/jobs/<id>  (health: {url}/healthz)")
    say(f"  gRPC:      {node.address} (runners only)")
    remote = (f"; remote operators: {node.admin.tcp_address} (TLS + token)"
              if node.admin and node.admin.tcp_address else "")
    say(f"  admin:     {node.admin_socket} (ciadm on this host finds it, no token needed{remote})")


def _forge_state(forge: Forge, enabled: bool) -> str:
    name = FORGE_NAMES[forge]
    return f"{name} enabled" if enabled else f"{name} off (set {SECRET_SETTINGS[forge]})"


async def _supervise(node: Node, integration: Integration, stop: asyncio.Event) -> None:
    ended = await first_to_end({
        "signal": stop.wait(),
        "node": node.wait(),
        "integration dedupe purge": integration.maintain(),
    })
    if isinstance(ended.error, SolsticeError):
        raise ended.error
    if ended.name == "signal" or (ended.name == "node" and ended.error is None):
        return  # node.wait() returning = a drained exit
    raise ServeError(ended.message)
