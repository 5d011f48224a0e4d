"""The dashboard on the integration's HTTP side (multi-host), when ``dashboard.store_url`` is set.

It reads the orchestrators' state store (PostgreSQL). Its cancel and re-run
buttons ask an orchestrator's AdminService with the integration's own
operator token (``admin.address`` / ``admin.token``, the link the forges'
cancel and re-run use too), after the dashboard has checked the signed-in
operator's role; without that link the dashboard is read-only. Job logs, live
ones too, are read through the same link (``dashboard.adminlogs``: the node
finds any attempt's log on its peers or in the archive); without it the job
page says how to read one (``dashboard.logsource.NoLogs``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from common.metrics.http import MetricsEndpoint
from dashboard.actions import AdminActions
from dashboard.app import Backing, Dashboard
from dashboard.columns import ColumnSource
from dashboard.links import ForgeLinks, github_web_url
from dashboard.adminlogs import AdminLogs
from dashboard.logsource import LogSource, NoLogs
from integration.admin_link import admin_target
from integration.settings import IntegrationSettings
from orchestrator.artifacts.archive import ArtifactArchive
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.metrics import store_families
from orchestrator.store import open_store


@contextlib.asynccontextmanager
async def open_dashboard(settings: IntegrationSettings, columns: Sequence[ColumnSource] = ()
                         ) -> AsyncIterator[tuple[Dashboard | None, MetricsEndpoint]]:
    """The dashboard (None without ``dashboard.store_url``) and ``/metrics``, for the block;
    ``columns`` add to the matrix and the pull request pages (out-of-tree CI results)."""
    metrics = MetricsEndpoint()
    if not settings.dashboard.store_url:
        yield None, metrics
        return
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings.dashboard.store_url))
        web = {"github": github_web_url(settings.github.api_url)}
        if settings.forgejo.url:
            web["forgejo"] = settings.forgejo.url
        dashboard = Dashboard(settings.dashboard, settings.public_url)
        actions: AdminActions | None = None
        logs: LogSource = NoLogs()
        if settings.admin.address:
            target, timeout = admin_target(settings.admin), float(settings.admin.timeout)
            actions, logs = AdminActions(target, timeout), AdminLogs(target, timeout)
        backend = getattr(store, "backend", None)  # the nodes' artifact archive (orchestrator/artifacts)
        artifacts = ArtifactStore(None, ArtifactArchive(backend)) if backend is not None else None
        dashboard.attach(Backing(store, logs, actions, ForgeLinks(web), columns=tuple(columns), artifacts=artifacts))
        metrics.add_source(store_families(store))
        yield dashboard, metrics
