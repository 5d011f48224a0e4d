"""What can go wrong while a driver provisions, watches or removes a VM.

    SolsticeError
    └── DriverError                 a VM driver could not do what was asked
        ├── NameInvalid             a zone/VNIC/dataset name broke the naming rules (also ValueError)
        ├── CommandFailed           an external command exited non-zero (argv, exit, stderr)
        │   └── CommandTimeout      ... or did not finish within its timeout and was killed
        ├── ProvisionError          a VM could not be prepared or booted
        ├── JobRefused              the driver will not run this job here (untrusted, cannot isolate)
        ├── BootTimeout             the runner never called in (carries the console tail)
        ├── BootFailed              the VM cannot come up and waiting longer will not help
        ├── VmDied                  the VM/process stopped before the runner called in
        └── UnknownDriver           the configuration names a driver that does not exist

Each message is written for the operator; ``console_tail`` is attached where a
VM was involved so a job that failed to boot shows why (DESIGN.md "quality bar").
"""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import SolsticeError


class DriverError(SolsticeError):
    """Base of every VM driver failure."""


class NameInvalid(DriverError, ValueError):
    """A name would reach an external command but breaks that command's rules."""


class CommandFailed(DriverError):
    """An external command exited non-zero; keeps argv, exit status and stderr."""

    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str, message: str | None = None) -> None:
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(message or f"{' '.join(self.argv)} failed (exit {exit_code}): {detail}")


class CommandTimeout(CommandFailed):
    """An external command ran past its timeout and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float, stderr: str = "") -> None:
        super().__init__(
            argv, -9, stderr, f"{' '.join(argv)} did not finish within {timeout:g}s and was killed"
        )
        self.timeout = timeout


class ProvisionError(DriverError):
    """A VM could not be prepared or booted; whatever was created is torn down."""

    def __init__(self, message: str, console_tail: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail


class JobRefused(DriverError):
    """The driver will not run this job on this host; the job ends ``failed`` with the message."""


class BootTimeout(DriverError):
    """The VM booted but its runner did not call in before the boot timeout (``why``: what the driver saw)."""

    def __init__(self, name: str, timeout: float, console_tail: str, why: str = "") -> None:
        super().__init__(f"VM {name}: the runner did not call in within {timeout:g}s" + (f": {why}" if why else ""))
        self.name = name
        self.console_tail = console_tail


class BootFailed(DriverError):
    """The VM runs (or ran) but cannot come up, e.g. the host is out of memory for it."""

    def __init__(self, name: str, why: str, console_tail: str = "") -> None:
        super().__init__(f"VM {name} cannot boot: {why}")
        self.name = name
        self.console_tail = console_tail


class VmDied(DriverError):
    """The VM (or local runner process) stopped before its runner called in."""

    def __init__(self, name: str, detail: str, console_tail: str = "") -> None:
        super().__init__(f"VM {name} stopped before its runner called in: {detail}")
        self.name = name
        self.console_tail = console_tail


class UnknownDriver(DriverError):
    """The configuration names a driver this build does not have."""
