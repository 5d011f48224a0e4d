"""Fixtures of the integration tests: an App key, payload loading, a fake Forgejo, the whole stack on loopback."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.fakes.forges import FakeForgejo, rsa_key_pair
from tests.integration.stack import IntegrationStack, RabbitQueue
from tests.proxy import TcpProxy


@pytest.fixture(scope="session")
def app_key() -> tuple[bytes, bytes]:
    return rsa_key_pair()


@pytest.fixture
def payload(fixtures_dir: Path) -> Callable[[str], dict[str, Any]]:
    """A fresh copy of a fixture payload: ``payload("github/push.new-branch")``."""
    cache: dict[str, dict[str, Any]] = {}

    def load(name: str) -> dict[str, Any]:
        if name not in cache:
            cache[name] = json.loads((fixtures_dir / "forge" / f"{name}.json").read_text())
        return copy.deepcopy(cache[name])

    return load


@pytest.fixture
async def forgejo(fixtures_dir: Path) -> AsyncIterator[FakeForgejo]:
    """A fake Forgejo on loopback that takes the API token ``fj-token``."""
    async with FakeForgejo(fixtures=fixtures_dir / "forge" / "forgejo", token="fj-token") as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def queue(amqp_vhost_url: str) -> AsyncIterator[RabbitQueue]:
    made = RabbitQueue(amqp_vhost_url)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def stack(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes],
                queue: RabbitQueue) -> AsyncIterator[IntegrationStack]:
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def postgres(pg_database: str) -> AsyncIterator[TcpProxy]:
    """A proxy of the test's own in front of PostgreSQL: give ``postgres.dsn_for(pg_database)`` as the store."""
    parts = urlsplit(pg_database)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
