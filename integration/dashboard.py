"""The dashboard on the integration's HTTP side (multi-host), when ``dashboard.store_url`` is set.

It reads the orchestrators' state store (PostgreSQL) and acts through it:
cancel and re-run announce on RabbitMQ's ``solstice.events`` and publish to
the job queue like AdminService does; a cancel of a running attempt reaches
its node through the node's store watcher. Job logs stay on the node that ran
the attempt: the job page says how to read one (``dashboard.logsource.NoLogs``)
until a cluster-wide log reader takes its place.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from common.metrics.http import MetricsEndpoint
from common.queue import RabbitJobPublisher, Topology
from common.queue.events import RabbitEventPublisher
from dashboard.actions import StoreActions
from dashboard.app import Backing, Dashboard
from dashboard.links import ForgeLinks, github_web_url
from dashboard.logsource import NoLogs
from integration.settings import IntegrationSettings
from orchestrator.metrics import store_families
from orchestrator.store import open_store


@contextlib.asynccontextmanager
async def open_dashboard(settings: IntegrationSettings, publisher: RabbitJobPublisher,
                         topology: Topology) -> AsyncIterator[tuple[Dashboard | None, MetricsEndpoint]]:
    """The dashboard (None without ``dashboard.store_url``) and ``/metrics``, for the block."""
    metrics = MetricsEndpoint()
    if not settings.dashboard.store_url:
        yield None, metrics
        return
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings.dashboard.store_url))
        events = await stack.enter_async_context(RabbitEventPublisher(settings.amqp_url, topology))
        web = {"github": github_web_url(settings.github.api_url)}
        if settings.forgejo.url:
            web["forgejo"] = settings.forgejo.url
        dashboard = Dashboard(settings.dashboard, settings.public_url)
        dashboard.attach(Backing(store, NoLogs(), StoreActions(store, publisher, events), ForgeLinks(web)))
        metrics.add_source(store_families(store))
        yield dashboard, metrics
