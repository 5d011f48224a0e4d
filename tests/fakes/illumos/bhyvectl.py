"""Fake ``bhyvectl --vm=NAME --destroy|--force-poweroff``: kill the VM; the zone falls to installed."""

from __future__ import annotations

import sys

from tests.fakes.illumos import state as st
from tests.fakes.illumos.zoneadm import kill_vm, to_installed


def main(argv: list[str]) -> int:
    st.record_call("bhyvectl", argv)
    vm = next((a.split("=", 1)[1] for a in argv if a.startswith("--vm=")), None)
    if vm is None or not {"--destroy", "--force-poweroff"} & set(argv):
        st.err("Usage: bhyvectl --vm=<vmname> [--destroy] [--force-poweroff] ...")
        return 1
    with st.locked() as state:
        zone = state["zones"].get(vm)
        if zone is None or zone["state"] != "running":
            st.err(f"vm_open: {vm} could not be opened: No such file or directory")  # wording UNCONFIRMED
            return 1
        kill_vm(zone)
        to_installed(state, vm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
