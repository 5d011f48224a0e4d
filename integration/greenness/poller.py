"""Ingest by polling: a configured queue with ``poll_interval`` has its ref's head read from the forge.

A new head becomes the same ``BuildRequested`` a push webhook makes, handed
to the webhook service's build path (``WebhookService.submit``) under a
source key of its own; so a head seen by a poll and by a webhook is one
build (the build claim on (forge, repo, ref, sha) and the queue's
(queue, head) dedupe), whichever comes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from common.errors import SolsticeError
from integration.events import BuildRequested, Forge, Repo
from integration.greenness.settings import GreennessSettings, QueueSettings, split_repo

log = logging.getLogger(__name__)

Submit = Callable[[str, BuildRequested], Awaitable[object]]


class HeadSource(Protocol):
    async def resolve(self, repo: Repo) -> Repo:
        """``repo`` completed with what a webhook would have said (GitHub: the App's installation)."""

    async def head_of(self, repo: Repo, ref: str, deadline: float | None = None) -> str | None: ...


class Poller:
    """Polls each queue of ``settings.queues`` with a ``poll_interval``; ``poll_due`` runs one round."""

    def __init__(self, settings: GreennessSettings, heads: Mapping[str, HeadSource], submit: Submit,
                 clone_urls: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.heads = dict(heads)
        self.submit = submit
        self.clone_urls = dict(clone_urls)  # forge -> base URL of clone URLs ("https://github.com")
        self.clock = clock
        self._next: dict[str, float] = {}
        self._last: dict[str, str] = {}  # queue name -> the head last handed over
        self.polls = 0

    def polled(self) -> dict[str, QueueSettings]:
        return {name: q for name, q in self.settings.queues.items() if q.poll_interval > 0}

    async def poll_due(self) -> int:
        """Read the head of every queue that is due; how many new heads were handed over."""
        handed = 0
        for name, queue in self.polled().items():
            if self.clock() < self._next.get(name, 0.0):
                continue
            self._next[name] = self.clock() + queue.poll_interval
            try:
                handed += await self.poll(name, queue)
            except SolsticeError as err:
                log.warning("polling %s failed, tried again in %gs: %s", name, queue.poll_interval, err,
                            extra={"fields": {"queue": name}})
        return handed

    async def poll(self, name: str, queue: QueueSettings) -> bool:
        forge, full_name = split_repo(queue.repo, f"greenness.queues.{name}.repo")
        source = self.heads.get(forge)
        if source is None:
            log.warning("queue %s cannot be polled: no API access to %s is configured", name, forge)
            return False
        repo = await source.resolve(
            Repo(Forge(forge), full_name, queue.clone_url or f"{self.clone_urls.get(forge, '')}/{full_name}.git"))
        self.polls += 1
        head = await source.head_of(repo, queue.ref)
        if head is None or head == self._last.get(name):
            return False
        build = BuildRequested(repo, queue.ref, head, f"{forge} poll")
        await self.submit(f"poll:{queue.repo}:{queue.ref}:{head}", build)
        self._last[name] = head
        log.info("polled a new head", extra={"fields": {"queue": name, "sha": head}})
        return True
