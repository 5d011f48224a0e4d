"""The broker link: one robust connection, fail fast at start, reconnect forever after.

``BrokerLink`` owns an aio-pika robust connection and a publisher-confirms
channel. ``publish`` returns only once the broker confirmed the message; while
the connection is down it keeps retrying (the robust connection reconnects in
the background) until ``publish_timeout`` runs out, then raises
``PublishFailed``. A retry after a lost confirm can store a message twice:
delivery is at-least-once, and consumers deduplicate (claims are idempotent).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ChannelClosed, PublishError
from aiormq.exceptions import ChannelInvalidStateError

from common.lifecycle import StartClose
from common.queue.errors import PublishFailed, QueueError, QueueUnavailable

log = logging.getLogger(__name__)

# How long to wait between publish attempts while the connection is down.
_RETRY_PAUSE = 0.2
# Between reconnection attempts (aio-pika's default is 5 s): a broker restart
# should cost jobs about a second, and a refused TCP connect is cheap.
RECONNECT_INTERVAL = 1.0


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


async def connect(url: str, timeout: float = 15.0) -> AbstractRobustConnection:
    """Open a robust connection or raise ``QueueUnavailable`` at once (fail fast).

    Reconnects every ``RECONNECT_INTERVAL`` s unless the URL says otherwise
    (``?reconnect_interval=5``).
    """
    options: dict[str, Any] = {}
    if "reconnect_interval" not in parse_qs(urlsplit(url).query):
        options["reconnect_interval"] = RECONNECT_INTERVAL
    try:
        connection: AbstractRobustConnection = await aio_pika.connect_robust(url, timeout=timeout, **options)
        return connection
    except (TimeoutError, *CONNECTION_EXCEPTIONS) as err:
        raise QueueUnavailable(f"cannot connect to RabbitMQ at {redact_url(url)}: {err or type(err).__name__}") from err


def start_error(url: str, err: BaseException) -> QueueError:
    """A ``QueueError`` for a failure while declaring or consuming at start-up."""
    if isinstance(err, ChannelClosed):
        # The broker answered and said no: a configuration problem, not an outage.
        return QueueError(
            f"RabbitMQ at {redact_url(url)} refused the queue topology: {err} (a queue or exchange declared "
            "with other arguments, e.g. by another version, must be deleted first; or the user lacks permissions)"
        )
    return QueueUnavailable(f"RabbitMQ at {redact_url(url)} failed during start-up: {err or type(err).__name__}")


class LinkState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class PublishStats:
    """Counters of one publisher since it started (for the admin API, logs and tests)."""

    confirmed: int = 0  # messages the broker confirmed as stored
    returned: int = 0  # messages the broker returned as unroutable
    retried: int = 0  # attempts that failed on a lost connection or timeout and were tried again


class BrokerLink:
    """A robust connection plus a confirm channel. Open with ``open()``, end with ``close()``."""

    def __init__(self, url: str, publish_timeout: float = 60.0) -> None:
        self.url = url
        self.publish_timeout = publish_timeout
        self.state = LinkState.UNOPENED
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._counts: collections.Counter[str] = collections.Counter()

    @property
    def stats(self) -> PublishStats:
        """A snapshot of the publish counters."""
        return PublishStats(**self._counts)

    async def open(self) -> None:
        """Connect and open the confirm channel; ``QueueUnavailable`` when the broker does not answer."""
        if self.state is not LinkState.UNOPENED:
            raise QueueError(f"the broker link is {self.state.value}; create a new one instead of reopening")
        self._connection = await connect(self.url)
        try:
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        except CONNECTION_EXCEPTIONS as err:
            await self._connection.close()
            raise QueueUnavailable(f"cannot open a channel on {redact_url(self.url)}: {err}") from err
        self.state = LinkState.OPEN

    async def open_with(self, setup: Callable[[], Awaitable[None]]) -> None:
        """``open()``, then ``setup()`` (declare, consume); if that fails, close again.

        A connection error during set-up comes out as ``start_error``'s
        ``QueueError``; anything else as it was raised.
        """
        await self.open()
        try:
            await setup()
        except CONNECTION_EXCEPTIONS as err:
            await self.close()
            raise start_error(self.url, err) from err
        except BaseException:
            await self.close()
            raise

    @property
    def connected(self) -> bool:
        """Open and currently connected (False while the robust connection is reconnecting)."""
        return self.state is LinkState.OPEN and self._connection is not None and self._connection.connected.is_set()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None or self.state is not LinkState.OPEN:
            raise QueueError(f"the broker link is {self.state.value}, not open")
        return self._connection

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None or self.state is not LinkState.OPEN:
            raise QueueError(f"the broker link is {self.state.value}, not open")
        return self._channel

    async def close(self) -> None:
        """Close channel and connection; safe to call twice."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        if self._connection is not None:
            try:
                await self._connection.close()
            except CONNECTION_EXCEPTIONS as err:
                log.debug("closing the broker connection failed: %s", err)

    async def publish(self, exchange: AbstractExchange, message: aio_pika.Message, routing_key: str) -> bool:
        """Publish until confirmed. Returns False if the broker returned it as unroutable."""
        deadline = time.monotonic() + self.publish_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                await _publish_confirmed(exchange, message, routing_key, max(remaining, 0.1))
                self._counts["confirmed"] += 1
                return True
            except PublishError:
                self._counts["returned"] += 1
                return False
            except (TimeoutError, *CONNECTION_EXCEPTIONS) as err:
                if self.state is not LinkState.OPEN:
                    raise PublishFailed("the broker link was closed before the message was confirmed") from err
                if time.monotonic() >= deadline:
                    raise PublishFailed(
                        f"RabbitMQ at {redact_url(self.url)} did not confirm message "
                        f"{message.message_id or '?'} within {self.publish_timeout:g}s: {err or type(err).__name__}"
                    ) from err
                self._counts["retried"] += 1
                log.warning(
                    "publish not confirmed, retrying",
                    extra={"fields": {"message_id": message.message_id, "error": str(err) or type(err).__name__}},
                )
                await asyncio.sleep(_RETRY_PAUSE)


async def _publish_confirmed(exchange: AbstractExchange, message: aio_pika.Message, routing_key: str,
                             timeout: float) -> None:
    """``exchange.publish(message, routing_key, mandatory=True)``, minus its wait for the write.

    aio-pika's publish holds the channel's lock until the connection's writer
    task has written the frame, so publishes on one channel go out one event-loop
    iteration apart: on a busy node a batch of events crawled out at one per
    loop pass. Here the lock covers only queueing the frame; the wait is for the
    broker's confirm alone, so a batch leaves in one go. ``PublishError`` when the
    broker returns it (the channel raises on returns), connection errors as
    aio-pika's.
    """
    owner = cast(aio_pika.Exchange, exchange).channel  # every Exchange has it; AbstractExchange does not say so
    if owner.is_closed:
        raise ChannelInvalidStateError(f"{owner!r} closed")
    channel = cast(aiormq.Channel, await owner.get_underlay_channel())  # wait= is the concrete channel's
    await channel.basic_publish(message.body, exchange=exchange.name, routing_key=routing_key,
                                properties=message.properties, mandatory=True, timeout=timeout, wait=False)


async def publish_all(publishes: Sequence[Awaitable[None]]) -> None:
    """Await ``publishes`` concurrently, all of them; then raise the first failure as it is.

    Not a ``TaskGroup``: it raises an ``ExceptionGroup``, which no caller expecting a
    ``PublishFailed`` (a ``QueueError``) catches - a broker outage longer than
    ``publish_timeout`` then ended the loops that publish (the event outbox, the sweep)
    instead of delaying them. None is left running when this returns or raises.
    """
    if len(publishes) == 1:
        await publishes[0]
        return
    for result in await asyncio.gather(*publishes, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class LinkedPublisher(StartClose):
    """Base of the publishers: a ``BrokerLink`` opened by ``start`` and closed by ``close``.

    Subclasses declare what they publish to in ``_declare``. Lifetime:
    ``start()`` connects (failing fast if the broker is down) and declares;
    afterwards the connection recovers by itself; ``close()`` ends it. Also an
    async context manager.
    """

    def __init__(self, url: str, publish_timeout: float = 60.0) -> None:
        self._link = BrokerLink(url, publish_timeout)

    @property
    def stats(self) -> PublishStats:
        """Counters of this publisher: confirmed, returned (unroutable) and retried publishes."""
        return self._link.stats

    async def _declare(self, channel: AbstractChannel) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Connect and declare what is published to; ``QueueError`` if either fails."""
        await self._link.open_with(lambda: self._declare(self._link.channel))

    async def close(self) -> None:
        await self._link.close()


__all__ = ["BrokerLink", "LinkState", "LinkedPublisher", "PublishStats", "connect", "publish_all", "redact_url",
           "start_error"]
