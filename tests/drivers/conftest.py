"""Fixtures for driver tests: a fake illumos host, a call-in gateway, configs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.catalog import BhyveConfig, LocalConfig
from orchestrator.store.sqlite import SqliteStore
from tests.drivers.support import CALLIN, POOL, Gateway, bhyve_config, seed
from tests.fakes.illumos.host import FakeHost


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture
def fake_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHost]:
    host = FakeHost.create()
    seed(host)
    for key, value in {**host.env, **host.path_env()}.items():
        monkeypatch.setenv(key, value)
    try:
        yield host
    finally:
        for pid in host.vm_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        host.remove()


@pytest.fixture
def bhyve_cfg(fake_host: FakeHost, tmp_path: Path) -> BhyveConfig:
    return bhyve_config(fake_host, tmp_path / "bhyve-state")


@pytest.fixture
def pool_cfg(fake_host: FakeHost, tmp_path: Path) -> BhyveConfig:
    """igb0 with a static address pool (support.POOL)."""
    return bhyve_config(fake_host, tmp_path / "bhyve-state", links={"igb0": POOL})


@pytest.fixture
async def lease_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real (SQLite) state store for address leases."""
    async with SqliteStore(tmp_path / "state.db") as store:
        yield store


@pytest.fixture
def local_cfg(tmp_path: Path) -> LocalConfig:
    return LocalConfig(state_dir=tmp_path / "local-state", runner_argv=(sys.executable, str(CALLIN)),
                       stop_grace=5.0)  # type: ignore[arg-type]
