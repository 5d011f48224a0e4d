"""Versioned plain-SQL migrations, applied when a store opens.

Files live in ``migrations/<dialect>/NNN_name.sql``; versions start at 1 and
have no gaps. ``schema_migrations`` records what was applied. Applying runs in
one write transaction that first takes the back-end's migration lock, so two
stores opening the same database at once apply each file exactly once, and a
second ``apply`` is a no-op. A database whose schema is newer than this code
is refused rather than misused.

A migration may have a data step (``DATA_STEPS``, by the migration's name, so
a renumbering keeps it): Python run in the same transaction right after its
SQL, for what SQL cannot do (reading the protobuf of stored rows).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from orchestrator.store import dashsql
from orchestrator.store.backend import Backend, Tx
from orchestrator.store.errors import MigrationError, StoreError

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


# migration name -> its data step (tx, dialect)
DATA_STEPS: dict[str, Callable[[Tx, str], Awaitable[None]]] = {"dashboard": dashsql.backfill}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` ("sqlite" or "postgres"), in order."""
    folder = resources.files("orchestrator.store.migrations").joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    if [migration.version for migration in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"the {dialect} migrations are not numbered 001, 002, ... without gaps")
    return found


async def apply(backend: Backend) -> list[int]:
    """Bring the schema of ``backend`` up to date; returns the versions applied now (often none)."""
    migrations = load(backend.dialect)
    applied_now: list[int] = []
    try:
        await _apply(backend, migrations, applied_now)
    except MigrationError:
        raise
    except StoreError as err:
        raise MigrationError(f"cannot bring the schema of {backend.where} up to date: {err}") from err
    return applied_now


async def _apply(backend: Backend, migrations: list[Migration], applied_now: list[int]) -> None:
    async with backend.transaction() as tx:
        await backend.lock_migrations(tx)
        await tx.execute(CREATE_TABLE)
        rows = await tx.fetch("SELECT version FROM schema_migrations")
        done = {int(row["version"]) for row in rows}
        newest = len(migrations)
        if done and max(done) > newest:
            raise MigrationError(
                f"the schema of {backend.where} is at version {max(done)}, newer than this "
                f"Solstice CI knows ({newest}); upgrade Solstice CI before using this database"
            )
        for migration in migrations:
            if migration.version in done:
                continue
            await tx.script(migration.sql)
            step = DATA_STEPS.get(migration.name)
            if step is not None:
                await step(tx, backend.dialect)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, {now})",
                migration.version, migration.name,
            )
            applied_now.append(migration.version)


async def applied_versions(backend: Backend) -> list[int]:
    """The versions recorded in ``schema_migrations``, in order."""
    async with backend.transaction(write=False) as tx:
        rows = await tx.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [int(row["version"]) for row in rows]
