"""Fixtures of the greenness tests: the store on both back-ends, a recorder with a clock of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.greenness.recorder import GreennessRecorder
from integration.greenness.settings import GreennessSettings
from integration.greenness.store import SqlGreennessStore, open_greenness_store
from tests.integration.greenness.support import Clock, Runner


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "green.sqlite")
    return request.getfixturevalue("pg_database")


@pytest.fixture
async def gstore(store_spec: str) -> AsyncIterator[SqlGreennessStore]:
    made = open_greenness_store(store_spec)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlGreennessStore]:
    made = open_greenness_store(str(tmp_path / "green.sqlite"))
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_runner(store: SqlGreennessStore, clock: Clock, settings: GreennessSettings | None = None,
                changes: dict | None = None) -> Runner:
    settings = settings or GreennessSettings(enabled=True)
    return Runner(GreennessRecorder(settings, store, changes, clock))
