"""Controlling the real RabbitMQ node from a test: stop and start the app, close connections, look into queues.

The broker is shared by everything on this machine, so an outage is kept
short and the app is always started again (``broker_stopped`` starts it in a
``finally`` and waits, with a deadline, until it accepts connections again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

# Generous: start_app on a loaded 2-core machine takes a few seconds.
_CTL_TIMEOUT = 60.0


async def rabbitmqctl(*args: str, timeout: float = _CTL_TIMEOUT) -> str:
    """Run ``rabbitmqctl -q <args>`` (argv list, no shell); raise with its stderr on failure."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"rabbitmqctl {' '.join(args)} did not finish within {timeout:g}s") from None
    if process.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed ({process.returncode}): {err.decode().strip()}")
    return out.decode()


async def wait_for_broker(url: str, timeout: float = 60.0) -> None:
    """Return once ``url`` accepts an AMQP connection; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as err:
            last = err
            await asyncio.sleep(0.2)  # poll interval of a deadline loop
            continue
        await connection.close()
        return
    raise AssertionError(f"RabbitMQ did not accept connections within {timeout:g}s: {last}")


@asynccontextmanager
async def amqp_channel(url: str) -> AsyncIterator[AbstractChannel]:
    """A channel on a plain connection, for looking into the broker; the connection closes after the block."""
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def messages_ready(url: str, queue_name: str) -> int:
    """Messages waiting in ``queue_name`` (not handed to any consumer)."""
    async with amqp_channel(url) as channel:
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


@asynccontextmanager
async def broker_stopped(url: str) -> AsyncIterator[None]:
    """``rabbitmqctl stop_app`` for the duration of the block; ``start_app`` (always) and wait after."""
    await rabbitmqctl("stop_app")
    try:
        yield
    finally:
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")
        await wait_for_broker(url)


def vhost_of(url: str) -> str:
    from urllib.parse import unquote

    return unquote(urlsplit(url).path.lstrip("/")) or "/"


async def close_vhost_connections(url: str, why: str) -> None:
    """Have the broker close every client connection of ``url``'s vhost (and no other)."""
    await rabbitmqctl("close_all_connections", "--vhost", vhost_of(url), why)


def with_reconnect_interval(url: str, seconds: float) -> str:
    """``url`` with aio-pika's robust ``reconnect_interval`` set (the default, 5 s, slows tests)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"reconnect_interval={seconds:g}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
