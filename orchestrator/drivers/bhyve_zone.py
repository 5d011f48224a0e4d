"""The zone side of a job VM: running the tools, reading a zone's state, stopping and removing it.

Every tool runs with ``LC_ALL=C``: they ``gettext`` their messages and the
driver matches English stderr ("No such zone configured", "dataset does not
exist", ...), so the orchestrator's own locale must not leak in.

State reads follow ``zoneadm``'s ``zone_print``: ``zoneadm -z Z list -p``
exiting 0 *without* a line for Z means the zone shut down while zoneadm
collected its data - not that it is gone. Only "No such zone configured"
means gone. Stopping follows OmniOS zadm (``bhyvectl --vm=Z
--force-poweroff``): bhyve exits, and zoneadmd halts the zone by itself;
``zoneadm halt`` is the fallback, and a halt that fails because the zone
moved on (its own halt, a concurrent teardown) is fine once the zone is
seen below ``running``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from orchestrator.catalog import BhyveConfig
from orchestrator.commands import CommandResult, run_command
from orchestrator.drivers.errors import CommandFailed, DriverError

log = logging.getLogger(__name__)

GONE_ZONE = "No such zone configured"
GONE = "gone"  # _state(): the zone does not exist
UNKNOWN = None  # _state(): exit 0 but no line: shutting down right now, look again
MAX_TEARDOWN_ROUNDS = 12
UP = ("running", "ready")


def tool_env() -> dict[str, str]:
    """The orchestrator's environment with the C locale (the tools' messages are matched in English)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


class ZoneTools:
    """Runs the illumos tools for the driver (argv lists, LC_ALL=C, the configured timeouts)."""

    def __init__(self, config: BhyveConfig) -> None:
        self.config = config

    async def run(self, *argv: str, check: bool = True, timeout: float | None = None) -> CommandResult:
        return await run_command(argv, timeout=timeout or self.config.command_timeout, check=check,
                                 env=tool_env())

    async def tolerate(self, gone: str, *argv: str) -> None:
        """Run ``argv``; a failure whose stderr says ``gone`` counts as success."""
        result = await self.run(*argv, check=False)
        if result.exit_code != 0 and gone not in result.stderr:
            raise CommandFailed(result.argv, result.exit_code, result.stderr)

    async def state(self, vm: str) -> str | None:
        """The zone's state; ``GONE`` when it does not exist; ``UNKNOWN`` (None) during a shutdown."""
        result = await self.run(self.config.zoneadm, "-z", vm, "list", "-p", check=False)
        if result.exit_code != 0:
            if GONE_ZONE in result.stderr:
                return GONE
            raise CommandFailed(result.argv, result.exit_code, result.stderr)
        for line in result.stdout.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[1] == vm:
                return fields[2]
        return UNKNOWN

    async def settled_state(self, vm: str, timeout: float) -> str | None:
        """``state`` until it is known (not ``UNKNOWN``, not shutting down) or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.state(vm)
            if state not in (UNKNOWN, "shutting_down", "down") or loop.time() >= deadline:
                return state
            await asyncio.sleep(self.config.poll_interval)

    async def stop(self, vm: str) -> None:
        """Power the guest off and see the zone below ``running``; idempotent."""
        c = self.config
        state = await self.state(vm)
        if state == "running":
            # OmniOS zadm's way: bhyve exits, zoneadmd halts the zone itself.
            # zoneadm halt alone sends ACPI power-off and may wait 30 min (§1.6).
            result = await self.run(c.bhyvectl, f"--vm={vm}", "--force-poweroff", check=False)
            if result.ok:
                state = await self.settled_state_below_running(vm, c.poweroff_timeout)
        if state in UP or state in (UNKNOWN, "shutting_down", "down"):
            try:
                await self.run(c.zoneadm, "-z", vm, "halt", timeout=c.halt_timeout)
            except CommandFailed as err:
                # The zone's own halt or a concurrent teardown may have won the race.
                now = await self.settled_state(vm, c.poll_interval * 3)
                if now in UP:
                    raise
                log.info("halt failed but the zone is %s; nothing to stop", now,
                         extra={"fields": {"vm": vm, "error": str(err)}})

    async def settled_state_below_running(self, vm: str, timeout: float) -> str | None:
        """Wait up to ``timeout`` for the zone to leave ``running`` after a power-off."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.state(vm)
            if state not in (*UP, UNKNOWN, "shutting_down", "down") or loop.time() >= deadline:
                return state
            await asyncio.sleep(min(self.config.poll_interval, 0.2))

    async def remove(self, vm: str) -> None:
        """illumos.md §7: act on the zone's state until it is gone."""
        c = self.config
        loop = asyncio.get_running_loop()
        waited_until = loop.time() + c.halt_timeout  # a zone that is shutting down gets this long
        rounds = 0
        while rounds < MAX_TEARDOWN_ROUNDS:
            state = await self.state(vm)
            if state in (UNKNOWN, "shutting_down", "down") and loop.time() < waited_until:
                await asyncio.sleep(c.poll_interval)
                continue
            rounds += 1
            try:
                if state == GONE:
                    return
                if state in UP or state in (UNKNOWN, "shutting_down", "down"):
                    await self.stop(vm)
                elif state in ("installed", "incomplete"):
                    await self.run(c.zoneadm, "-z", vm, "uninstall", "-F")
                elif state == "configured":
                    await self.run(c.zonecfg, "-z", vm, "delete", "-F")
                elif state == "mounted":
                    await self.run(c.zoneadm, "-z", vm, "unmount")
            except CommandFailed as err:
                # Someone else (a concurrent destroy, reconciliation, the guest
                # powering off) may have moved the zone on; look again.
                log.info("teardown step failed; re-reading the zone state",
                         extra={"fields": {"vm": vm, "error": str(err)}})
        raise DriverError(f"VM {vm}: the zone did not go away after {MAX_TEARDOWN_ROUNDS} teardown steps")
