"""The HTTP listener against slow and greedy clients (raw sockets), and the headers of every answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.httpserver import HttpLimits
from tests.integration.stack import IntegrationStack, RabbitQueue
from tests.waiting import async_wait_until

# Small deadlines keep the tests short; a client is judged by the server closing on it, never by a clock.
LIMITS = HttpLimits(header_timeout=0.5, body_timeout=0.5, max_connections_per_client=3)
SAFETY = 30.0  # a server that never cuts fails the test after this long instead of hanging it


@pytest.fixture
async def limited(tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue) -> AsyncIterator[IntegrationStack]:
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, http=LIMITS)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    return await asyncio.wait_for(reader.read(), SAFETY)


async def test_a_client_that_never_finishes_its_headers_is_cut(limited: IntegrationStack):
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    try:
        writer.write(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n")  # no blank line
        await writer.drain()
        assert await _closed(reader) == b""
    finally:
        writer.close()


async def test_headers_trickled_in_do_not_extend_the_deadline(limited: IntegrationStack):
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    closed = asyncio.ensure_future(reader.read())
    try:
        # one header line every 0.1 s, each resetting nothing: bounded at SAFETY/0.1 lines
        for n in range(int(SAFETY / 0.1)):
            if closed.done():
                break
            writer.write(b"GET /healthz HTTP/1.1\r\n" if n == 0 else b"X-Slow-%d: 1\r\n" % n)
            await asyncio.wait({closed}, timeout=0.1)
        assert closed.done() and closed.result() == b""
    finally:
        closed.cancel()
        writer.close()


async def test_a_client_that_never_finishes_its_body_gets_408(limited: IntegrationStack, queue: RabbitQueue):
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    try:
        writer.write(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                     b"X-GitHub-Delivery: slow\r\nContent-Length: 1000\r\n\r\n{\"ref\": ")
        await writer.drain()
        answer = await _closed(reader)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"the request body did not arrive within 0.5s" in answer
        assert b"X-Content-Type-Options: nosniff" in answer
    finally:
        writer.close()
    assert await queue.count() == 0


async def test_an_idle_keep_alive_connection_is_closed_too(limited: IntegrationStack):
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answer = await _closed(reader)  # answered, then closed when no second request came
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status": "ok"}')
    finally:
        writer.close()


async def test_connections_per_client_are_capped(tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue):
    # A long header deadline: the held connections must stay open while the test looks.
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher,
                             http=HttpLimits(header_timeout=60, max_connections_per_client=3))
    await stack.start()
    held = []
    try:
        for _ in range(3):
            held.append(await asyncio.open_connection("127.0.0.1", stack.port))
        await async_wait_until(lambda: stack.site.open.get("127.0.0.1") == 3, what="3 connections admitted")
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        refused = await _closed(reader)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503 ") and b"too many connections from your address" in refused
        assert b"X-Content-Type-Options: nosniff" in refused
        # one let go: a new connection is served again
        held.pop()[1].close()
        await async_wait_until(lambda: stack.site.open.get("127.0.0.1") == 2, what="the closed connection released")
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await _closed(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()
    finally:
        for _, w in held:
            w.close()
        await stack.close()


async def test_every_answer_says_nosniff(stack: IntegrationStack):
    for method, path in (("GET", "/healthz"), ("GET", "/nowhere"), ("POST", "/webhooks/github")):
        async with stack.client.request(method, stack.url + path, data=b"{}") as answer:
            assert answer.headers.get("X-Content-Type-Options") == "nosniff", (method, path, answer.status)
