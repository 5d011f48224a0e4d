"""The VM driver interface the scheduler uses, and the spec of one VM.

Lifetimes (who calls what, and how long things live):

* A ``Driver`` is created once per orchestrator process by
  ``registry.make_driver`` and lives until ``aclose()`` at shutdown. It keeps
  no state the host does not also keep: after a restart (or a crash) a new
  instance finds every VM it owns again through ``list_owned``.
* A ``VmSpec`` lives for one attempt of one job. The scheduler calls, in order,
  ``prepare`` -> ``boot`` -> ``wait_ready``; then the job runs; then ``stop``
  and ``destroy`` - always, in a ``finally``, whatever happened before.
  A failed ``prepare``/``boot`` has already cleaned up what it created, but
  calling ``destroy`` again is harmless.
* ``destroy`` and ``stop`` are idempotent and tolerate "already gone"; they
  may run concurrently with each other and with ``reconcile`` (registry.py),
  which the scheduler runs at start-up and on a timer with the names of the
  VMs its live jobs claim.
* ``console_tail`` may be called at any time for error reports; it returns
  what is known (possibly ``""``) and never raises for a missing VM.

Every clause above is a test of tests/drivers/contract/, run on every driver
(a new driver joins ``conftest.KINDS`` there).
"""

from __future__ import annotations

from typing import Any

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from common.bootstrap import RunnerBootstrap
from orchestrator.names import validate_vm_name, vm_name


@dataclass(frozen=True)
class VmSpec:
    """One attempt of one job, as the driver needs it.

    ``name`` is validated (``solstice-<8 hex>-<attempt>``); build it with
    ``VmSpec.for_job`` rather than by hand. ``bootstrap`` carries the
    orchestrator address and the attempt's token to the runner in the VM.
    ``trusted`` is False for a job whose code comes from outside the
    repository (a fork pull request): a driver that cannot isolate it
    refuses it in ``prepare`` (``JobRefused``).
    """

    name: str
    job_id: str
    attempt: int
    label: str
    bootstrap: RunnerBootstrap
    trusted: bool = True
    # The job's caches and their scope (orchestrator.caches): a driver that keeps caches as
    # disks (bhyve with a cache_dataset) attaches them in ``prepare``; the others ignore them.
    caches: tuple[Any, ...] = ()
    cache_scope: Any = None

    def __post_init__(self) -> None:
        validate_vm_name(self.name)

    @classmethod
    def for_job(cls, job_id: str, attempt: int, label: str, bootstrap: RunnerBootstrap,
                trusted: bool = True) -> VmSpec:
        return cls(vm_name(job_id, attempt), job_id, attempt, label, bootstrap, trusted)


@runtime_checkable
class Driver(Protocol):
    """Creates, watches and removes the throw-away VM of each job attempt."""

    name: str

    def serves(self, label: str) -> bool:
        """True if this driver can run jobs with ``runs_on == label``."""
        ...

    async def prepare(self, spec: VmSpec) -> None:
        """Create everything the VM needs short of starting it.

        bhyve: clone the boot volume, create the VNIC, configure and install
        the zone. local: the work directory. On failure, everything created
        so far is destroyed and ``ProvisionError`` is raised; a job the
        driver will not run here raises ``JobRefused`` before anything is made.
        """
        ...

    async def boot(self, spec: VmSpec) -> None:
        """Start the VM; returns once it is started (not once the guest is up)."""
        ...

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        """Wait until ``ready`` is set (by the runner gateway when the runner calls in).

        Raises ``BootTimeout(console_tail)`` after ``timeout`` seconds, or
        ``VmDied`` as soon as the VM stops before the runner called in.
        """
        ...

    async def stop(self, name: str) -> None:
        """Stop the VM if it runs. Idempotent."""
        ...

    async def destroy(self, name: str) -> None:
        """Remove every trace of the VM. Idempotent; "already gone" is success."""
        ...

    async def list_owned(self) -> set[str]:
        """Names of every VM this host holds that carries the Solstice prefix."""
        ...

    async def console_tail(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines of the VM's console/boot log, ``""`` if none."""
        ...

    async def aclose(self) -> None:
        """Cancel and await the driver's background tasks (console capture); VMs stay."""
        ...
