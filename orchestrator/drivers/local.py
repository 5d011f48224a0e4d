"""The local driver: the job's "VM" is a runner process on this machine.

Per VM ``<state_dir>/<vm>/`` holds ``work/`` (the runner's own directory,
``SOLSTICE_RUNNER_DIR``), ``console.log`` (its stdout and stderr) and
``pid`` (pid + kernel start time). The runner runs as
``<runner_argv...> --orchestrator HOST:PORT`` in its own session / process
group; the job token travels only in its environment
(``SOLSTICE_RUNNER_TOKEN``), so ``ps`` never shows it.

Stopping a VM kills the runner's process group and then every process
left in the runner's session: a step runs in its own process group but in
the runner's session (runner/steps.py), so a step's processes die with the
"VM" even when the runner itself was killed first (Linux: found in
``/proc``; elsewhere only the group is killed).

A restarted orchestrator finds its VMs again from the directories, and kills
a leftover runner only if the pid's start time still matches the pid file -
a recycled pid is never signalled. Where ``/proc`` does not exist (macOS)
the check falls back to "the process group exists" (documented weaker).

With ``isolate_network`` (Linux) the runner starts under ``unshare --net
--map-root-user`` in a network namespace of its own and dials the
orchestrator through a Unix socket relay (local_relay.py): a job's steps
reach no network at all.

Where the host allows it (local_contain.py: Linux, root, namespaces,
cgroups), each job is *contained* instead: the runner starts under
``unshare`` in PID and mount namespaces of its own, with a namespace init
(local_init.py) that puts the job in its cgroup first; stopping the VM asks
that init to end the runner (SIGTERM, ``stop_grace``), then kills the whole
cgroup, whatever its processes did. The runner's environment is an
allowlist (``runner_env``), never the node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

from common.bootstrap import ENV_ORCHESTRATOR, ENV_TOKEN
from common.keyedlocks import KeyedLocks
from orchestrator.catalog import LocalConfig
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve_console import tail_file
from orchestrator.drivers.cgroups import CgroupError
from orchestrator.drivers.errors import BootTimeout, DriverError, JobRefused, ProvisionError, VmDied
from orchestrator.drivers.local_contain import (
    REFUSAL,
    Containment,
    announce,
    cgroup_limits,
    contained_argv,
    detect_containment,
    runner_env,
)
from orchestrator.drivers.local_relay import Relay
from orchestrator.drivers.process import (
    kill_group,
    live_pid,
    process_start_time,
    read_pid_file,
    wait_for_call_in,
    write_pid_file,
)
from orchestrator.names import is_vm_name, validate_vm_name

log = logging.getLogger(__name__)


def _first_child(pid: int) -> int | None:
    """The first child of ``pid`` (the namespace init under ``unshare``), None if it has none."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def session_members(session: int) -> list[int]:
    """Live (not zombie) processes of ``session``; empty where ``/proc`` does not exist."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
        if fields[0] not in ("Z", "X") and int(fields[3]) == session:
            members.append(int(name))
    return members


class LocalDriver:
    """Driver that runs each job's runner as a local subprocess (single-node, tests, laptops)."""

    name = "local"

    def __init__(self, config: LocalConfig, containment: Containment | None = None, announced: bool = True) -> None:
        """``announced=False``: no start-up lines on how jobs run (``cidev``, whose jobs are the
        developer's own and never untrusted, says so in its own words)."""
        self.config = config
        self.contain = containment if containment is not None else detect_containment(config)
        if announced:
            announce(config, self.contain)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._relays: dict[str, Relay] = {}
        self._locks = KeyedLocks()  # one teardown of a VM at a time

    def serves(self, label: str) -> bool:
        return not self.config.labels or label in self.config.labels

    def _dir(self, vm: str) -> Path:
        return self.config.state_dir / vm

    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        if not spec.trusted and not self.contain.isolated and not self.config.allow_untrusted:
            raise JobRefused(REFUSAL)
        proc = self._procs.get(vm)
        if proc is not None and proc.returncode is None:
            raise ProvisionError(f"VM name {vm} is in use by a live job on this host")
        if self._alive_pid(vm) is not None:
            # A runner of this very VM left by an orchestrator that died while
            # starting it (a redelivered claim of the same attempt).
            await self.stop(vm)
        work = self._dir(vm) / "work"
        try:
            work.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self._dir(vm), 0o700)  # console log, pid file: the node's only
            if self.contain.contained:
                # The job user passes through to its own 0700 directories the runner makes in here.
                os.chmod(work, 0o711)
        except OSError as err:
            raise ProvisionError(f"cannot create the work directory of {vm}: {err.strerror}") from err
        if self.contain.cgroups is not None:
            try:
                await asyncio.to_thread(self.contain.cgroups.create, vm, cgroup_limits(self.config, spec.label))
            except CgroupError as err:
                await self.destroy(vm)
                raise ProvisionError(f"cannot create the cgroup of {vm}: {err}") from err

    async def boot(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        d = self._dir(vm)
        address = spec.bootstrap.orchestrator
        argv = [*self.config.runner_argv]
        contained = self.contain.contained
        if self.config.isolate_network:
            relay = Relay(self.config.relay_dir / f"{vm}.sock", address)
            try:
                await relay.start()
            except OSError as err:
                await self.destroy(vm)
                raise ProvisionError(f"cannot listen for the isolated runner of {vm}: {err.strerror}") from err
            self._relays[vm] = relay
            address = relay.address
            if not contained:
                argv = [self.config.unshare, "--net", "--map-root-user", "--", *argv]
        argv += ["--orchestrator", address]
        runner_dir = self.config.job_mount if contained else d / "work"
        extra = {ENV_ORCHESTRATOR: address, ENV_TOKEN: spec.bootstrap.token, "SOLSTICE_RUNNER_DIR": str(runner_dir)}
        if contained:
            extra["HOME"] = str(runner_dir)
            if self.contain.user is not None:
                extra["SOLSTICE_RUNNER_STEP_USER"] = self.contain.user.name
            argv = contained_argv(self.config, self.contain, vm, d / "work", argv, self.config.isolate_network)
        env = runner_env(self.config, self.contain, extra)
        try:
            with open(d / "console.log", "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=str(d / "work"), env=env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=out, start_new_session=True,
                )
        except OSError as err:
            await self.destroy(vm)
            raise ProvisionError(f"cannot start the runner for {vm} ({argv[0]}): {err.strerror}") from err
        self._procs[vm] = proc
        write_pid_file(d, proc.pid)
        log.info("runner started", extra={"fields": {"vm": vm, "pid": proc.pid}})

    def _alive_pid(self, vm: str) -> int | None:
        """The runner's pid if it is (still) the process we started."""
        return live_pid(self._procs.get(vm), self._dir(vm))

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        vm = validate_vm_name(spec.name)
        outcome = await wait_for_call_in(ready, timeout, 0.1, lambda: self._alive_pid(vm) is not None)
        if outcome == "timeout":
            raise BootTimeout(vm, timeout, await self.console_tail(vm))
        if outcome == "died":
            proc = self._procs.get(vm)
            code = proc.returncode if proc is not None else None
            detail = f"the runner exited with status {code}" if code is not None else "the runner is not running"
            raise VmDied(vm, detail, await self.console_tail(vm))

    async def stop(self, name: str) -> None:
        vm = validate_vm_name(name)
        # One teardown of a VM at a time: a destroy removing the cgroup while a stop
        # freezes and kills its members would fail that stop (base.py: they may race).
        async with self._locks.hold(vm):
            await self._stop(vm)

    async def _stop(self, vm: str) -> None:
        if self.contain.cgroups is not None:
            await self._stop_contained(vm)
            return
        session = self._session_id(vm)
        pid = self._alive_pid(vm)
        if pid is not None:
            await self._kill_group(vm, pid)
        if session is not None:
            await self._kill_session(vm, session)
        proc = self._procs.pop(vm, None)
        if proc is not None:
            await proc.wait()
        relay = self._relays.pop(vm, None)
        if relay is not None:
            await relay.close()

    async def _stop_contained(self, vm: str) -> None:
        """Ask the namespace init to end the runner; after ``stop_grace`` kill the whole cgroup."""
        cgroups = self.contain.cgroups
        assert cgroups is not None
        loop = asyncio.get_running_loop()
        pid = self._alive_pid(vm)
        init = _first_child(pid) if pid is not None else None
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGTERM)  # the init passes it to the runner
            deadline = loop.time() + self.config.stop_grace
            while loop.time() < deadline and await asyncio.to_thread(cgroups.members, vm):
                await asyncio.sleep(0.05)
        try:
            await asyncio.to_thread(cgroups.kill, vm)
        except CgroupError as err:
            raise DriverError(f"cannot kill the processes of {vm}: {err}") from err
        # unshare exits once its child (the init) is gone; one left by a lost orchestrator is killed.
        proc = self._procs.pop(vm, None)
        leftover = self._alive_pid(vm) if proc is None else None  # checked again: the pid may be reused by now
        if leftover is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        if proc is not None:
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 5.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        relay = self._relays.pop(vm, None)
        if relay is not None:
            await relay.close()

    def _session_id(self, vm: str) -> int | None:
        """The runner's session id (its pid) while processes of that session may be left.

        A session id is not handed to a new process while any member lives, so
        with the leader gone the members found are the runner's; a live leader
        whose start time differs is a recycled pid and is left alone.
        """
        proc = self._procs.get(vm)
        if proc is not None:
            return proc.pid
        record = read_pid_file(self._dir(vm))
        if record is None:
            return None
        pid, started = record
        now = process_start_time(pid)
        return pid if now is None or now == started else None

    async def _kill_session(self, vm: str, session: int) -> None:
        """SIGTERM what is left of the runner's session, SIGKILL it after ``stop_grace``."""
        loop = asyncio.get_running_loop()
        for sig, grace in ((signal.SIGTERM, self.config.stop_grace), (signal.SIGKILL, 5.0)):
            members = await asyncio.to_thread(session_members, session)
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = loop.time() + grace
            while loop.time() < deadline and await asyncio.to_thread(session_members, session):
                await asyncio.sleep(0.05)
        if await asyncio.to_thread(session_members, session):
            log.warning("step processes did not die after SIGKILL", extra={"fields": {"vm": vm}})

    async def _kill_group(self, vm: str, pid: int) -> None:
        if not await kill_group(pid, self.config.stop_grace, self._procs.get(vm),
                                lambda: self._alive_pid(vm) is not None):
            log.warning("runner did not die after SIGKILL", extra={"fields": {"vm": vm, "pid": pid}})

    async def destroy(self, name: str) -> None:
        vm = validate_vm_name(name)
        async with self._locks.hold(vm):
            await self._destroy(vm)

    async def _destroy(self, vm: str) -> None:
        await self._stop(vm)
        if self.contain.cgroups is not None:
            try:
                await asyncio.to_thread(self.contain.cgroups.remove, vm)
            except CgroupError as err:
                raise DriverError(f"cannot remove the cgroup of {vm}: {err}") from err
        await asyncio.to_thread(shutil.rmtree, self._dir(vm), True)
        # A relay socket left by an orchestrator that died.
        (self.config.relay_dir / f"{vm}.sock").unlink(missing_ok=True)

    async def list_owned(self) -> set[str]:
        # The state directory alone says what is ours: the cgroup parent is
        # shared by every node started from the same cgroup (two single nodes
        # on one laptop, a test suite), so a group under it may be another
        # node's live job. prepare() makes the directory before the group and
        # destroy() removes the group before the directory, so no group of
        # ours outlives its directory.
        try:
            return {p.name for p in self.config.state_dir.iterdir() if is_vm_name(p.name)}
        except FileNotFoundError:
            return set()

    async def console_tail(self, name: str, lines: int = 50) -> str:
        vm = validate_vm_name(name)
        return await asyncio.to_thread(tail_file, self._dir(vm) / "console.log", lines)

    async def aclose(self) -> None:
        # Runners keep running (the orchestrator may be restarting); just reap
        # ours. Relays end with this process: an isolated runner then retries
        # until its offline limit, and reconciliation reaps it.
        self._procs.clear()
        for vm in list(self._relays):
            await self._relays.pop(vm).close()
