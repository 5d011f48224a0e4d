"""``LabelRouter``: one node, several VM drivers, chosen by each job's ``runs_on`` label.

The single node's config may send some labels to another driver
(``label_drivers: {illumos-stable: bhyve}``); every other label goes to the
default driver (``drivers.driver``). The node sees one driver: the router
remembers which child prepared each VM, and after a restart asks the
children's ``list_owned`` (each child keeps its VMs in its own place, so two
children never claim one VM).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from orchestrator.drivers.base import Driver, VmSpec
from orchestrator.drivers.errors import ProvisionError


class LabelRouter:
    """``Driver`` over ``default`` and the drivers of ``by_label``. Lifetime: as its children's."""

    def __init__(self, default: Driver, by_label: Mapping[str, Driver]) -> None:
        self.default = default
        self.by_label = dict(by_label)
        self.children: list[Driver] = [default, *{id(d): d for d in by_label.values() if d is not default}.values()]
        self.name = "+".join(d.name for d in self.children)
        self._owner: dict[str, Driver] = {}

    def driver_for(self, label: str) -> Driver:
        """The child that runs ``label`` (whether it serves it or not)."""
        return self.by_label.get(label, self.default)

    def serves(self, label: str) -> bool:
        return self.driver_for(label).serves(label)

    def _of_spec(self, spec: VmSpec) -> Driver:
        owner = self._owner.get(spec.name)
        if owner is None:
            owner = self.driver_for(spec.label)
            if not owner.serves(spec.label):
                raise ProvisionError(f"the {owner.name} driver cannot run label {spec.label!r}")
            self._owner[spec.name] = owner
        return owner

    async def _of_name(self, name: str) -> Driver | None:
        owner = self._owner.get(name)
        if owner is not None:
            return owner
        for child in self.children:  # a VM of the previous process
            if name in await child.list_owned():
                self._owner[name] = child
                return child
        return None

    async def prepare(self, spec: VmSpec) -> None:
        await self._of_spec(spec).prepare(spec)

    async def boot(self, spec: VmSpec) -> None:
        await self._of_spec(spec).boot(spec)

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        await self._of_spec(spec).wait_ready(spec, ready, timeout)

    async def stop(self, name: str) -> None:
        owner = await self._of_name(name)
        if owner is not None:
            await owner.stop(name)

    async def destroy(self, name: str) -> None:
        owner = await self._of_name(name)
        if owner is not None:  # no owner: already gone, which is success
            await owner.destroy(name)
        self._owner.pop(name, None)

    async def list_owned(self) -> set[str]:
        owned: set[str] = set()
        for child in self.children:
            owned |= await child.list_owned()
        return owned

    async def console_tail(self, name: str, lines: int = 50) -> str:
        owner = await self._of_name(name)
        return "" if owner is None else await owner.console_tail(name, lines)

    async def aclose(self) -> None:
        for child in self.children:
            await child.aclose()
