"""Real PostgreSQL and RabbitMQ for tests, each test run isolated.

A test run gets its own RabbitMQ vhost and creates its own PostgreSQL
databases; both are removed when the run ends. A service that does not answer
makes the test FAIL with a message saying how to start it - never skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

PG_HOST = os.environ.get("SOLSTICE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SOLSTICE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("SOLSTICE_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("SOLSTICE_TEST_PG_DB", "test")
AMQP_HOST = os.environ.get("SOLSTICE_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("SOLSTICE_TEST_AMQP_PORT", "5672"))

RUN_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"


class ServiceMissing(AssertionError):
    """A service the test needs does not answer (the test fails, never skips)."""


def require_port(name: str, host: str, port: int, how: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as err:
        raise ServiceMissing(
            f"{name} is not reachable at {host}:{port} ({err}); start it with: {how} "
            "(scripts/ensure-services.sh does this)"
        ) from err


def require_postgres() -> None:
    require_port(
        "PostgreSQL", PG_HOST, PG_PORT,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    )


def require_rabbitmq() -> None:
    require_port("RabbitMQ", AMQP_HOST, AMQP_PORT, "rabbitmq-server -detached")


def pg_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _psql(sql: str) -> None:
    import asyncio

    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(pg_dsn(PG_ADMIN_DB))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def create_database() -> str:
    """Create an empty database for one test; returns its DSN."""
    require_postgres()
    name = f"solstice_t_{RUN_TAG}_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str) -> str:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        raise ServiceMissing(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def create_vhost() -> str:
    """Create a RabbitMQ vhost for this test run; returns its amqp:// URL."""
    require_rabbitmq()
    vhost = f"solstice-test-{RUN_TAG}-{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


def amqp_url(vhost: str) -> str:
    from urllib.parse import quote

    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{quote(vhost, safe='')}"
