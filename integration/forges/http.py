"""HTTP calls to a forge API with capped, jittered backoff.

5xx, timeouts and connection errors are retried (``RetryPolicy``). A rate
limit - GitHub answers primary and secondary limits with 403 or 429, with
``Retry-After``, ``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset``, or a
"rate limit" message - is not a refusal: the wait the forge asked for is
honoured in full (never cut short, which GitHub penalises) when it fits the
caller's deadline and ``RetryPolicy.max_wait``; otherwise ``ForgeRateLimited``
tells the caller when to come back. Every other 4xx raises ``ForgeRejected``
carrying the forge's own message (not retried: the same request would fail
the same way). When the attempts or the caller's deadline run out,
``ForgeUnavailable`` says what failed last.

A request that is not idempotent (creating a check run) is sent once: after
a timeout, a dropped connection or a 5xx the forge may have done it, so the
caller looks before it sends again (``GitHubClient.ensure_check_run``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from common import metrics
from integration.errors import ForgeRateLimited, ForgeRejected, ForgeUnavailable, UnsafeForgeUrl

log = logging.getLogger(__name__)

# GitHub's advice when a rate-limit answer names no time: "wait for at least one minute".
DEFAULT_RATE_LIMIT_WAIT = 60.0


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
    """``attempts`` per call, paused by capped jittered backoff; ``max_wait``: the longest
    ``Retry-After`` / rate-limit reset waited for in the call (a longer one is the caller's)."""

    attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    request_timeout: float = 20.0
    max_wait: float = 60.0

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped, jittered."""
        cap = min(self.backoff_max, self.backoff_initial * (2.0 ** (attempt - 1)))
        return cap * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any  # decoded JSON, or None when the answer was not JSON
    text: str


def _seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value (delay seconds or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def rate_limit_wait(status: int, headers: Mapping[str, str], message: str, now: float) -> float | None:
    """Seconds to wait when an answer is a rate limit (GitHub's documented signals); None when it is not one."""
    if status not in (403, 429):
        return None
    retry_after = _seconds(headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        reset = headers.get("x-ratelimit-reset", "").strip()
        return max(float(reset) - now, 0.0) if reset.isdigit() else DEFAULT_RATE_LIMIT_WAIT
    if status == 429 or "rate limit" in message.lower():
        return DEFAULT_RATE_LIMIT_WAIT
    return None


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
        data: bytes | None = None,
        idempotent: bool = True,
    ) -> Response:
        """Send until a 2xx (or a status in ``allow``) comes back.

        ``body`` is sent as JSON; ``data`` instead sends those exact bytes (a signed body).
        ``deadline`` is a ``time.monotonic()`` instant after which no attempt
        starts and no wait ends. ``idempotent=False``: sent once unless the
        forge said it did nothing (a rate limit); see the module docstring.
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
                    method, url, headers=dict(headers), **({"data": data} if data is not None else {"json": body}),
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as answer:
                    # Forges answer UTF-8 JSON; a proxy error page in another charset must not raise here.
                    text = (await answer.read()).decode("utf-8", errors="replace")
                    status = answer.status
                    answer_headers = {name: answer.headers.get(name, "") for name in
                                      ("Retry-After", "x-ratelimit-remaining", "x-ratelimit-reset")}
            except (TimeoutError, aiohttp.ClientError) as err:
                metrics.forge_called(self.forge.lower(), None)
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                if not idempotent:
                    raise ForgeUnavailable(f"{self.forge} {what} failed: {last} (not repeated: the forge may "
                                           "have done it)") from None
            else:
                metrics.forge_called(self.forge.lower(), status)
                try:
                    decoded = json.loads(text) if text else None
                except ValueError:
                    decoded = None
                if 200 <= status < 300 or status in allow:
                    return Response(status, decoded, text)
                message = forge_message(decoded, text)
                limited = rate_limit_wait(status, answer_headers, message, time.time())
                if limited is not None:
                    last = f"HTTP {status}: rate limited: {message}"
                    if attempt < self.policy.attempts and await self._wait_asked(limited, deadline, what, last):
                        continue
                    raise ForgeRateLimited(
                        f"{self.forge} {what}: rate limited, retry in {limited:.0f}s ({last})", time.time() + limited)
                if status < 500:
                    raise ForgeRejected(f"{self.forge} {what}", status, message)
                last = f"HTTP {status}: {message}"
                if not idempotent:
                    raise ForgeUnavailable(f"{self.forge} {what} failed: {last} (not repeated: the forge may "
                                           "have done it)")
                asked = _seconds(answer_headers["Retry-After"], time.time())
                if asked is not None:
                    if attempt < self.policy.attempts and await self._wait_asked(asked, deadline, what, last):
                        continue
                    # Longer than we may wait here: the caller comes back then, not sooner.
                    raise ForgeUnavailable(f"{self.forge} {what} failed: {last}; retry in {asked:.0f}s",
                                           time.time() + asked)
            if attempt < self.policy.attempts:
                log.warning(
                    "%s %s failed, retrying", self.forge, what,
                    extra={"fields": {"attempt": attempt, "error": last}},
                )
                if not await self.pause_before_retry(attempt, deadline):
                    break
        raise ForgeUnavailable(f"{self.forge} {what} failed: {last}")

    async def pause_before_retry(self, attempt: int, deadline: float | None) -> bool:
        """The policy's pause after failed attempt ``attempt``; False (no pause) when it would pass ``deadline``."""
        return await self._wait(self.policy.pause(attempt), deadline)

    async def _wait_asked(self, seconds: float, deadline: float | None, what: str, last: str) -> bool:
        """Wait the whole time the forge asked for, if it fits ``max_wait`` and ``deadline``; False if not."""
        if seconds > self.policy.max_wait or deadline is not None and time.monotonic() + seconds >= deadline:
            return False
        log.warning("%s %s: waiting %.1fs as the forge asked", self.forge, what, seconds,
                    extra={"fields": {"error": last}})
        await asyncio.sleep(seconds)
        return True

    @staticmethod
    async def _wait(seconds: float, deadline: float | None) -> bool:
        if deadline is not None and time.monotonic() + seconds >= deadline:
            return False
        await asyncio.sleep(seconds)
        return True
