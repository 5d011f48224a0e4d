"""The audit trail of secret deliveries: one row per job attempt that asked for secrets.

``delivered`` rows are written when a runner fetched the values (GetJob,
after its token was checked) - before the values leave - and ``refused``
rows when a job was refused its secrets. A row names the job attempt, the
repository and ref, the secret names and the node; never a value. Rows live
in the ``secret_deliveries`` table of the state store, whatever secret store
holds the values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.secrets.model import Scope
from orchestrator.store.backend import Backend
from orchestrator.store.records import Row

DELIVERED = "delivered"
REFUSED = "refused"
_COLUMNS = "seq, job_id, attempt, repo, ref, names, outcome, reason, host, store, at"
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Delivery:
    """One audit record."""

    seq: int
    job_id: str
    attempt: int
    repo: str           # forge/owner/repo, or what the job builds when it is no forge repository
    ref: str
    names: tuple[str, ...]
    outcome: str        # DELIVERED or REFUSED
    reason: str         # why it was refused ("" when delivered)
    host: str           # the node that decided
    store: str          # the secret store that held the values
    at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        return cls(int(row["seq"]), row["job_id"], int(row["attempt"]), row["repo"], row["ref"],
                   tuple(json.loads(row["names"])), row["outcome"], row["reason"], row["host"], row["store"],
                   datetime.fromtimestamp(float(row["at"]), tz=UTC))


class AuditLog:
    """Writes and reads ``secret_deliveries`` through the state store's ``backend``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def record(self, *, job_id: str, attempt: int, repo: str, ref: str, names: Sequence[str],
                     outcome: str, host: str, store: str, reason: str = "") -> None:
        await self.backend.run(
            "INSERT INTO secret_deliveries (job_id, attempt, repo, ref, names, outcome, reason, host, store, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {now})",
            job_id, attempt, repo, ref, json.dumps(list(names)), outcome, reason, host, store,
        )

    async def query(self, job_id: str = "", scope: Scope | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first; ``scope`` a repository, or an owner for all its repositories."""
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        where: list[str] = []
        args: list[object] = []
        if job_id:
            args.append(job_id)
            where.append(f"job_id = ${len(args)}")
        if scope is not None:
            if scope.is_repository:
                args.append(str(scope))
                where.append(f"repo = ${len(args)}")
            else:
                prefix = f"{scope}/"
                args += [prefix, len(prefix)]
                where.append(f"substr(repo, 1, ${len(args)}) = ${len(args) - 1}")
        args.append(limit)
        sql = (f"SELECT {_COLUMNS} FROM secret_deliveries"
               + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY seq DESC LIMIT ${len(args)}")
        return [Delivery.from_row(row) for row in await self.backend.run(sql, *args)]
