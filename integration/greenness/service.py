"""``Greenness``: greenness wired from the integration's settings, with its task and routes.

Lifetime (owned by ``integration.runtime.Integration``): ``start()`` opens
the store (the integration's database, tables of its own) and starts one
task that, every ``hook_interval``, delivers due hook deliveries, judges
commits that waited past ``incomplete_after`` and polls the queues that
are due; a round that fails is logged and the next one runs. ``close()``
cancels and awaits the task and closes the store. Job events reach
``recorder.handle`` through an event queue of its own ("greenness").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from common.lifecycle import StartClose
from common.log import masker
from integration.errors import IntegrationError
from integration.forges.forgejo_api import ForgejoClient
from integration.forges.github_api import GitHubClient
from integration.greenness.api import GreennessApi
from integration.greenness.column import GreennessColumn
from integration.greenness.forges import ForgejoReader, GitHubReader, Installations
from integration.greenness.hooks import HookSender
from integration.greenness.poller import Poller, Submit
from integration.greenness.recorder import GreennessRecorder
from integration.greenness.settings import GreennessSettings
from integration.greenness.store import SqlGreennessStore, open_greenness_store

log = logging.getLogger(__name__)


class Greenness(StartClose):
    """See the module docstring. ``clients``: per forge name, its API client (``GitHubClient``/``ForgejoClient``)."""

    def __init__(self, settings: GreennessSettings, store_spec: str, session: aiohttp.ClientSession,
                 clients: Mapping[str, object], submit: Submit, clone_urls: Mapping[str, str],
                 public_url: str = "") -> None:
        self.settings = settings
        self.store: SqlGreennessStore = open_greenness_store(store_spec)
        readers: dict[str, GitHubReader | ForgejoReader] = {}
        for name, client in clients.items():
            if isinstance(client, GitHubClient):
                readers[name] = GitHubReader(client, Installations(client.http, client.auth))
            elif isinstance(client, ForgejoClient):
                readers[name] = ForgejoReader(client)
        self.recorder = GreennessRecorder(settings, self.store, readers)
        self.sender = HookSender(settings, self.store, session)
        self.poller = Poller(settings, readers, submit, clone_urls)
        self.api = GreennessApi(self.store)
        self.column = GreennessColumn(self.store, public_url)
        self._task: asyncio.Task[None] | None = None
        masker.add(*(h.secret for h in settings.hooks.values() if h.secret))

    async def start(self) -> None:
        await self.store.open()
        self._task = asyncio.create_task(self._run(), name="greenness hooks, incomplete commits and polling")

    async def round(self) -> None:
        """One round of the task's work (tests call it directly)."""
        await self.recorder.sweep()
        while await self.sender.deliver_due():
            pass
        await self.poller.poll_due()

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except IntegrationError as err:
                log.error("a greenness round failed: %s", err)
            except Exception:  # noqa: BLE001 - one round's failure must not end the loop
                log.exception("a greenness round failed")
            await asyncio.sleep(self.settings.hook_interval)

    def add_routes(self, app: web.Application) -> None:
        self.api.add_routes(app)

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.store.close()
