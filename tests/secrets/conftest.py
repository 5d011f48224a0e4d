"""Fixtures of the secrets tests: a state store on each back-end, keyrings, a fake Vault."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.secrets.keyring import Keyring, new_key_entry
from orchestrator.store import Store, store_for_url
from tests.fakes.vault import FakeVault
from tests.store.conftest import store_url  # noqa: F401 - the same two back-ends as the store contract


@pytest.fixture
async def state(store_url: str) -> AsyncIterator[Store]:  # noqa: F811
    store = store_for_url(store_url, pool_size=2)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def keyring(*entries: str) -> Keyring:
    return Keyring.parse("\n".join(entries), "test keyring")


@pytest.fixture
def key_entries() -> tuple[str, str]:
    """Two keys, old and new (``ID:BASE64``)."""
    return new_key_entry().replace("k", "old", 1), new_key_entry().replace("k", "new", 1)


@pytest.fixture
async def vault() -> AsyncIterator[FakeVault]:
    async with FakeVault() as fake:
        yield fake
