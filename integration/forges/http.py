"""HTTP calls to a forge API with capped, jittered backoff.

5xx, 429, timeouts and connection errors are retried (``RetryPolicy``);
every other 4xx raises ``ForgeRejected`` carrying the forge's own message
(not retried: the same request would fail the same way). When the attempts
or the caller's deadline run out, ``ForgeUnavailable`` says what failed last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from common import metrics

from integration.errors import ForgeRejected, ForgeUnavailable, UnsafeForgeUrl

log = logging.getLogger(__name__)


def api_url(base: str, *segments: str | int, query: Mapping[str, str] | None = None) -> str:
    """``base`` followed by ``segments``, each quoted whole as one path segment.

    ``/``, ``?``, ``#`` and ``%`` in a value cannot add segments or a query;
    dots are not quoted, so an empty, ``.`` or ``..`` segment (which the URL
    library would resolve) raises ``UnsafeForgeUrl`` instead of being sent.
    """
    parts = []
    for segment in map(str, segments):
        if segment in ("", ".", ".."):
            raise UnsafeForgeUrl(f"refusing to call the forge: {segment!r} would move the URL path off {base}")
        parts.append(quote(segment, safe=""))
    url = "/".join([base.rstrip("/"), *parts])
    return f"{url}?{urlencode(query)}" if query else url


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    request_timeout: float = 20.0

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped, jittered."""
        cap = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        return cap * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any  # decoded JSON, or None when the answer was not JSON
    text: str


def forge_message(body: Any, text: str) -> str:
    """The human message of a forge error answer (GitHub and Forgejo both use ``message``)."""
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        errors = body.get("errors")
        if errors:
            message += f" {json.dumps(errors)[:500]}"
        if message:
            return message
    return text[:300] or "(empty answer)"


class ForgeHttp:
    """Retrying JSON requests on a shared ``aiohttp.ClientSession`` (owned by the caller)."""

    def __init__(self, session: aiohttp.ClientSession, forge: str, policy: RetryPolicy = RetryPolicy()) -> None:
        self.session = session
        self.forge = forge
        self.policy = policy

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: Any = None,
        allow: tuple[int, ...] = (),
        deadline: float | None = None,
    ) -> Response:
        """Send until a 2xx (or a status in ``allow``) comes back.

        ``deadline`` is a ``time.monotonic()`` instant after which no attempt starts.
        """
        last = "no attempt made"
        for attempt in range(1, self.policy.attempts + 1):
            timeout = self.policy.request_timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    break
            try:
                async with self.session.request(
                    method, url, headers=dict(headers), json=body,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as answer:
                    # Forges answer UTF-8 JSON; a proxy error page in another charset must not raise here.
                    text = (await answer.read()).decode("utf-8", errors="replace")
                    status = answer.status
                    retry_after = answer.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                metrics.forge_called(self.forge.lower(), None)
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                metrics.forge_called(self.forge.lower(), status)
                try:
                    decoded = json.loads(text) if text else None
                except ValueError:
                    decoded = None
                if 200 <= status < 300 or status in allow:
                    return Response(status, decoded, text)
                if status < 500 and status != 429:
                    raise ForgeRejected(f"{self.forge} {what}", status, forge_message(decoded, text))
                last = f"HTTP {status}: {forge_message(decoded, text)}"
                if retry_after and retry_after.isdigit():
                    await self._wait(min(float(retry_after), self.policy.backoff_max), deadline)
                    continue
            if attempt < self.policy.attempts:
                log.warning(
                    "%s %s failed, retrying", self.forge, what,
                    extra={"fields": {"attempt": attempt, "error": last}},
                )
                if not await self._wait(self.policy.pause(attempt), deadline):
                    break
        raise ForgeUnavailable(f"{self.forge} {what} failed: {last}")

    @staticmethod
    async def _wait(seconds: float, deadline: float | None) -> bool:
        if deadline is not None and time.monotonic() + seconds >= deadline:
            return False
        await asyncio.sleep(seconds)
        return True
