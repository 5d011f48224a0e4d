"""Fake ``bhyvectl --vm=NAME --force-poweroff|--destroy``.

Like the real one (which suspends the VM through ``/dev/vmm/NAME``) it only
asks: it returns at once, and the fake bhyve process of the zone powers off
on its own time, after which zoneadmd halts the zone (``vm.py``: running ->
shutting_down -> installed). A VM that is not running cannot be opened.
"""

from __future__ import annotations

import os
import signal
import sys

from tests.fakes.illumos import state as st


def main(argv: list[str]) -> int:
    st.record_call("bhyvectl", argv)
    vm = next((a.split("=", 1)[1] for a in argv if a.startswith("--vm=")), None)
    if vm is None or not {"--destroy", "--force-poweroff"} & set(argv):
        st.err("Usage: bhyvectl --vm=<vmname> [--destroy] [--force-poweroff] ...")
        return 1
    with st.locked() as state:
        rule = st.check_fault(state, "bhyvectl", "poweroff")
        zone = state["zones"].get(vm)
        pid, started = (zone or {}).get("vm_pid"), (zone or {}).get("vm_start")
    if rule:
        return st.apply_fault(rule)
    if zone is None or zone["state"] != "running" or not pid or st.proc_start_time(pid) != started:
        st.err(f"vm_open: {vm} could not be opened: No such file or directory")  # wording UNCONFIRMED
        return 1
    os.kill(pid, signal.SIGUSR2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
