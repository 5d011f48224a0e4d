"""What the guest is given (its user-data) and what its logs say about a boot going wrong.

The user-data is the runner's bootstrap (common/bootstrap.py: the golden
image's runner service starts the runner once it is written) and one ``runcmd``:
``echo solstice-ci: user-data of <vm> applied >/dev/console``. On the serial console (the driver's ``console.log``) that
line proves the guest ran *our* user-data: a guest without it either ignored
the NoCloud seed or got the brand's generated one (boot.py falls back to it
silently when the ``cloud-init`` file is missing), and the job fails saying
so instead of with a bare timeout.

``diagnose`` reads bhyve's ``init.log`` for the failures bhyve cannot report
otherwise (illumos-gate ``usr/src/cmd/bhyve/common/bhyverun.c``): guest RAM
that does not fit makes ``vm_setup_memory`` loop "Unable to allocate memory
(N), retrying in 1 second" with the zone ``running``; a device that fails to
initialise ends bhyve at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from common.bootstrap import RunnerBootstrap, render_user_data

_ENOMEM = re.compile(r"Unable to allocate memory \((\d+)\), retrying in 1 second")
_DEVICE = re.compile(r"^(Unable to initialize backend .*|Device emulation initialization error.*)$", re.M)
# cloud-init's final stage message on the console ("Cloud-init v. 24.1 finished at ...").
_CLOUD_INIT_DONE = re.compile(r"Cloud-init v\. \S+ finished")


def marker(vm: str) -> str:
    """The console line that proves the guest applied this VM's user-data."""
    return f"solstice-ci: user-data of {vm} applied"


def render_guest_user_data(vm: str, boot: RunnerBootstrap) -> str:
    """The runner's NoCloud user-data (the image's service starts the runner) with the console marker."""
    doc = yaml.safe_load(render_user_data(boot))
    doc.setdefault("runcmd", []).insert(0, ["sh", "-c", f"echo {marker(vm)} >/dev/console"])
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)


def check_user_data(path: Path) -> str | None:
    """Why ``path`` would not reach the guest as our user-data, or None when it will."""
    try:
        if not path.is_file():
            return f"{path} is missing (the brand would boot the guest with user-data of its own)"
        with open(path, "rb") as f:
            if not f.read(13) == b"#cloud-config":
                return f"{path} is not a #cloud-config document"
    except OSError as err:
        return f"{path} cannot be read: {err.strerror}"
    return None


def memory_shortfall(init_log: str) -> int | None:
    """Bytes of guest RAM bhyve keeps failing to allocate, or None."""
    m = _ENOMEM.search(init_log)
    return int(m.group(1)) if m else None


def diagnose(vm: str, init_log: str, console: str) -> str | None:
    """A reason the boot cannot succeed, read from bhyve's init.log and the guest console; None if none."""
    wanted = memory_shortfall(init_log)
    if wanted is not None:
        return (f"host out of memory for {wanted / 2**30:g} GiB: bhyve keeps retrying to allocate the guest's RAM "
                "(lower node.capacity, or give the image memreserve: true with a reservoir that fits)")
    device = _DEVICE.search(init_log)
    if device:
        return f"bhyve could not start: {device.group(1)}"
    if _CLOUD_INIT_DONE.search(console) and marker(vm) not in console:
        return "cloud-init finished without running our user-data (no marker line on the serial console)"
    return None


def timeout_reason(vm: str, console: str, runner: str) -> str:
    """What a boot timeout means, from whether the guest applied our user-data."""
    if marker(vm) in console:
        return f"the guest applied our user-data, but the runner never reached {runner}"
    return ("the guest never applied our user-data (no marker line on its serial console): does the image run "
            "cloud-init with the NoCloud datasource, with the serial port as its console?")
