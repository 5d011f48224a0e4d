"""The dashboard on a real SQLite store, log store, local queue and event bus, over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.queue.local_events import LocalEventBus
from dashboard.actions import StoreActions
from dashboard.app import Backing, Dashboard
from dashboard.columns import ColumnSource
from dashboard.links import ForgeLinks
from dashboard.logsource import LocalLogs
from dashboard.settings import DashboardSettings
from integration.httpserver import HttpLimits, harden
from orchestrator.logstore import LogStore
from orchestrator.node.outbox import Outbox
from orchestrator.operators import OperatorTokens, Role
from orchestrator.singlenode.queue import SingleNodeQueue
from orchestrator.store import Store, open_store
from tests.dashboard.support import Seeded, seed


@dataclass
class Served:
    client: TestClient
    store: Store
    logs: LogStore
    dashboard: Dashboard
    seeded: Seeded
    queue: SingleNodeQueue

    async def token(self, name: str, role: Role) -> str:
        text, _ = await OperatorTokens(self.store).create(name, role)
        return text

    async def sign_in(self, token: str) -> None:
        answer = await self.client.post("/signin", data={"token": token, "next": "/"}, allow_redirects=False,
                                        headers={"Origin": self.origin})
        assert answer.status == 303, await answer.text()

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")


class _NoNode:
    """The cancel target of a dashboard that runs no job itself."""

    host = "dashboard-test"

    def cancel_local(self, job_id: str, reason: str) -> bool:
        return False


NO_NODE = _NoNode()


async def _stopped(task: asyncio.Task[None], outbox: Outbox) -> None:
    await outbox.flush(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def serve_dashboard(tmp: Path, settings: DashboardSettings = DashboardSettings(),
                          columns: tuple[ColumnSource, ...] = ()) -> AsyncIterator[Served]:
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(f"sqlite:///{tmp / 'state.sqlite'}"))
        logs = await stack.enter_async_context(LogStore(tmp / "logs"))
        queue = await stack.enter_async_context(SingleNodeQueue(tmp / "queue.sqlite", (), True))
        events = await stack.enter_async_context(LocalEventBus(tmp / "events.sqlite"))
        # What a single node's dashboard acts through: the node's durable outbox, sending in a task.
        outbox = Outbox(events, queue, durable=(store, NO_NODE.host))
        sending = asyncio.create_task(outbox.run(), name="outbox")
        stack.push_async_callback(_stopped, sending, outbox)
        seeded = await seed(store, logs)
        dashboard = Dashboard(settings)
        dashboard.attach(Backing(store, LocalLogs(logs), StoreActions(store, outbox, NO_NODE),
                                 ForgeLinks({"github": "https://github.com"}),
                                 lambda host, label: "local" if host == "host-a" else "", columns))
        app = web.Application()
        harden(app, HttpLimits())
        dashboard.add_routes(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        stack.push_async_callback(client.close)
        yield Served(client, store, logs, dashboard, seeded, queue)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_dashboard(tmp_path) as it:
        yield it
