"""``HookSender``: delivers each queue transition to every hook that follows it, once, in order.

A transition and its deliveries are written together (``settle``); this
sender takes due ones - only the oldest pending delivery of each (hook,
queue), so a queue's transitions reach a hook in order - and:

* a **webhook**: ``POST`` of the transition as JSON, with
  ``X-Solstice-Delivery`` (the delivery id: the same on every retry, so the
  receiver can drop a repeat), ``X-Solstice-Timestamp`` (unix seconds, also
  in the body) and ``X-Solstice-Signature-256: sha256=<HMAC-SHA256 of the
  body with the hook's secret>``. Any 2xx answer is delivered.
* a **command**: the configured argv (never a shell), with a timeout, and an
  environment of only ``PATH`` and ``SOLSTICE_QUEUE``, ``SOLSTICE_PROJECT``,
  ``SOLSTICE_STATE``, ``SOLSTICE_COMMIT``, ``SOLSTICE_DEGREE``,
  ``SOLSTICE_LAST_GREEN``, ``SOLSTICE_DELIVERY``, ``SOLSTICE_TRANSITION``.
  Exit 0 is delivered.

A failure (an answer that is not 2xx, no answer, a non-zero exit, a
timeout) is recorded in the delivery log and retried after a pause that
doubles from ``hook_backoff`` to ``hook_backoff_max``; later transitions of
that queue wait for it. A delivery is taken under a lease (``hook_lease``),
so replicas sharing the store never send it at the same time; a process
that dies after sending but before recording it sends it again with the
same delivery id - the receiver's dedupe on that id makes it once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import aiohttp

from integration.greenness.settings import GreennessSettings, HookSettings
from integration.greenness.store import Delivery, SqlGreennessStore
from integration.signature import sign
from orchestrator.commands import run_command
from orchestrator.drivers.errors import DriverError

log = logging.getLogger(__name__)

USER_AGENT = "solstice-ci-greenness"


class HookFailed(Exception):
    """One attempt of one delivery failed; the message goes to the delivery log."""


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Solstice-Event": "greenness",
        "X-Solstice-Delivery": delivery_id,
        "X-Solstice-Timestamp": str(timestamp),
        "X-Solstice-Signature-256": "sha256=" + sign(secret, body),
    }


class HookSender:
    """Sends due deliveries (``deliver_due``); owns nothing (the session is the caller's)."""

    def __init__(self, settings: GreennessSettings, store: SqlGreennessStore, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.clock = clock
        self.delivered = 0
        self.failed = 0

    async def deliver_due(self, limit: int = 20) -> int:
        """One round: send what is due; how many were delivered."""
        done = 0
        for due in await self.store.take_deliveries(self.clock(), self.settings.hook_lease, limit):
            done += await self._deliver(due)
        return done

    async def _deliver(self, due: Delivery) -> bool:
        fields = {"hook": due.hook, "queue": due.queue, "transition": due.number, "delivery": due.id}
        attempts = due.attempts + 1
        hook = self.settings.hooks.get(due.hook)
        try:
            if hook is None:
                raise HookFailed(f"hook {due.hook!r} is no longer configured")
            if hook.url:
                await self._post(hook, due)
            if hook.command:
                await self._run(hook, due)
        except HookFailed as err:
            pause = min(self.settings.hook_backoff_max, self.settings.hook_backoff * 2 ** due.attempts)
            await self.store.delivery_failed(due.id, attempts, self.clock() + pause, str(err))
            self.failed += 1
            log.warning("hook delivery failed, retried in %.0fs: %s", pause, err, extra={"fields": fields})
            return False
        await self.store.delivered(due.id, attempts, self.clock())
        self.delivered += 1
        log.info("hook delivered", extra={"fields": {**fields, "attempts": attempts}})
        return True

    async def _post(self, hook: HookSettings, due: Delivery) -> None:
        timestamp = int(self.clock())
        doc = {**json.loads(due.body), "delivery": due.id, "timestamp": timestamp}
        body = json.dumps(doc, sort_keys=True).encode()
        headers = signed_headers(hook.secret, due.id, timestamp, body)
        try:
            async with self.session.post(hook.url, data=body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=hook.timeout)) as answer:
                if not 200 <= answer.status < 300:
                    text = (await answer.text(errors="replace"))[:200]
                    raise HookFailed(f"{_where(hook.url)} answered {answer.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise HookFailed(f"{_where(hook.url)} unreachable: {err!r}") from err

    async def _run(self, hook: HookSettings, due: Delivery) -> None:
        doc = json.loads(due.body)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SOLSTICE_QUEUE": f"{doc['queue']['forge']}:{doc['queue']['repo']}:{doc['queue']['ref']}",
            "SOLSTICE_PROJECT": doc["project"],
            "SOLSTICE_STATE": doc["state"],
            "SOLSTICE_COMMIT": doc["commit"],
            "SOLSTICE_DEGREE": "" if doc["degree"] is None else f"{doc['degree']:g}",
            "SOLSTICE_LAST_GREEN": doc["last_green"],
            "SOLSTICE_DELIVERY": due.id,
            "SOLSTICE_TRANSITION": str(doc["transition"]),
        }
        try:
            await run_command(hook.command, timeout=hook.timeout, env=env)
        except DriverError as err:
            raise HookFailed(str(err)) from err


def _where(url: str) -> str:
    """The URL without its query (a token there must not reach the log)."""
    return url.split("?", 1)[0]
