"""Address leases in SQL, mixed into ``SqlStore``: a pool's addresses, one VM each.

The decision who gets an address is the primary key ``(pool, address)``: a
lease is an ``INSERT ... ON CONFLICT DO NOTHING``, and whoever gets the row
back holds the address. Reading the leased addresses first only chooses which
candidate to try; a candidate taken meanwhile just makes the insert return
nothing, and the next one is tried. So any number of coroutines, processes or
hosts sharing the database never hand out an address twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from orchestrator.store.records import AddressLease, Row

LEASE_COLUMNS = "pool, address, host, vm_name, leased_at"


class LeasesSql:
    """The ``Store`` lease operations; needs ``_run`` from ``SqlStore``."""

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    async def lease_address(self, pool: str, host: str, vm_name: str, candidates: Iterable[str]) -> str | None:
        if not (pool and host and vm_name):
            raise ValueError("a lease needs a pool, a host and a VM name")
        held = await self._run("SELECT address FROM address_leases WHERE host = $1 AND vm_name = $2 AND pool = $3",
                               host, vm_name, pool)
        if held:  # asked again for the same VM (a retried prepare): the same address
            return str(held[0]["address"])
        taken = {row["address"] for row in await self._run(
            "SELECT address FROM address_leases WHERE pool = $1", pool)}
        for address in candidates:
            if address in taken:
                continue
            won = await self._run(
                "INSERT INTO address_leases (pool, address, host, vm_name, leased_at)"
                " VALUES ($1, $2, $3, $4, {now}) ON CONFLICT DO NOTHING RETURNING address",
                pool, address, host, vm_name)
            if won:
                return address
            # Taken since we looked - or this VM already holds another pool's
            # address (one address per VM): the next read tells which.
            mine = await self._run("SELECT address, pool FROM address_leases WHERE host = $1 AND vm_name = $2",
                                   host, vm_name)
            if mine:
                raise ValueError(f"VM {vm_name} already holds {mine[0]['address']} of pool {mine[0]['pool']}")
        return None

    async def release_address(self, host: str, vm_name: str) -> bool:
        rows = await self._run("DELETE FROM address_leases WHERE host = $1 AND vm_name = $2 RETURNING address",
                               host, vm_name)
        return bool(rows)

    async def address_leases(self, pool: str | None = None, host: str | None = None) -> list[AddressLease]:
        rows = await self._run(
            f"SELECT {LEASE_COLUMNS} FROM address_leases WHERE ($1 = '' OR pool = $1) AND ($2 = '' OR host = $2)"
            " ORDER BY pool, address", pool or "", host or "")
        return [AddressLease.from_row(row) for row in rows]
