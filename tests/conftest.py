"""Shared fixtures: real services, isolated per test run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

REPO_ROOT = Path(__file__).resolve().parent.parent
# Copies of the forge payloads and API schemas (source and licence in its README):
# the tests read nothing outside the checkout.
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture
def pg_database() -> Iterator[str]:
    """DSN of a fresh, empty PostgreSQL database, dropped after the test."""
    name = services.create_database()
    try:
        yield services.pg_dsn(name)
    finally:
        services.drop_database(name)


@pytest.fixture(scope="session")
def amqp_vhost_url() -> Iterator[str]:
    """amqp:// URL of a RabbitMQ vhost of this test run, deleted at the end."""
    vhost = services.create_vhost()
    try:
        yield services.amqp_url(vhost)
    finally:
        services.delete_vhost(vhost)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: real forge payloads and API schemas (``forge/github``, ``forge/forgejo``)."""
    return FIXTURES


@pytest.fixture
def job_dir() -> Iterator[Path]:
    """A directory the steps of a local job may write to and the test reads.

    A contained job (the default as root) runs its steps as the job user, who
    cannot reach pytest's 0700 ``tmp_path``: this one is a fresh directory
    under the system temporary directory, writable by anyone (sticky), and
    removed after the test.
    """
    path = Path(tempfile.mkdtemp(prefix="solstice-job-test-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
