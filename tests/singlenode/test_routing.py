"""``LabelRouter``: jobs go to their label's driver; a restarted router finds each VM's owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.errors import ProvisionError
from orchestrator.node.testing import InstantDriver
from orchestrator.singlenode.routing import LabelRouter


def spec(job: str, label: str) -> VmSpec:
    return VmSpec.for_job(job, 1, label, RunnerBootstrap("127.0.0.1:1", "token"))


async def test_labels_route_and_a_new_router_finds_the_owner(tmp_path: Path) -> None:
    default, other = InstantDriver(tmp_path / "a"), InstantDriver(tmp_path / "b", labels=("fast",))
    router = LabelRouter(default, {"fast": other})
    assert router.serves("anything") and router.serves("fast") and router.name == "instant+instant"
    slow_vm, fast_vm = spec("job-1", "ubuntu"), spec("job-2", "fast")
    await router.prepare(slow_vm)
    await router.prepare(fast_vm)
    assert await default.list_owned() == {slow_vm.name} and await other.list_owned() == {fast_vm.name}
    assert await router.list_owned() == {slow_vm.name, fast_vm.name}

    again = LabelRouter(InstantDriver(tmp_path / "a"), {"fast": InstantDriver(tmp_path / "b", labels=("fast",))})
    await again.destroy(fast_vm.name)  # known only from the child's own list
    assert await again.list_owned() == {slow_vm.name}
    await again.destroy(fast_vm.name)  # already gone: success
    await again.destroy(slow_vm.name)
    assert await again.list_owned() == set()
    assert await again.console_tail("solstice-00000000-1") == ""


async def test_a_mapped_driver_that_does_not_serve_the_label_refuses(tmp_path: Path) -> None:
    router = LabelRouter(InstantDriver(tmp_path / "a"), {"fast": InstantDriver(tmp_path / "b", labels=("other",))})
    assert not router.serves("fast")
    with pytest.raises(ProvisionError, match="cannot run label 'fast'"):
        await router.prepare(spec("job-3", "fast"))
