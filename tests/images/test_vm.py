"""Proof in real VMs: the golden Debian image boots under QEMU with a NoCloud seed built as
the bhyve brand builds it, and the runner inside calls the real orchestrator on this host.

One node (SQLite, its real RunnerService on loopback) with the qemu driver runs two jobs at
once, each in its own VM booted from a copy-on-write overlay of the image:

* a job with two steps: the runner fetches it, checks out its commit (git over HTTP from this
  host), runs both steps, streams the logs, reports success;
* the same guest handed a forged bootstrap token: the orchestrator refuses the runner, the
  runner says why on the serial console and the guest powers off; the job ends errored with
  that reason, taken from the console.

KVM is used where it really works here, else TCG (a few minutes per boot on 2 cores).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from common.config import Seconds
from common.tokens import TokenIssuer
from images.build import BuiltImage
from orchestrator.catalog import DriverConfig, QemuConfig, QemuImage
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.qemu import QemuDriver
from orchestrator.names import vm_name
from orchestrator.store import JobState, StepState
from tests.images.support import served_repo
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until

LABEL = "debian-12"
BOOT = 900.0  # a deadline for a TCG boot on a loaded 2-core machine, not an expectation


class ForgingDriver(QemuDriver):
    """The qemu driver, except that the jobs named in ``forged`` get a token signed with
    another key (well-formed, naming the right job: only the signature is wrong)."""

    def __init__(self, config: QemuConfig, forged: set[str]) -> None:
        super().__init__(config)
        self.forged = forged

    async def prepare(self, spec: VmSpec) -> None:
        if spec.job_id in self.forged:
            token = TokenIssuer(os.urandom(32), 600.0).issue(spec.job_id, spec.attempt, time.time())
            spec = dataclasses.replace(spec, bootstrap=RunnerBootstrap(spec.bootstrap.orchestrator, token))
        await super().prepare(spec)


@pytest.mark.timeout(2400)  # includes building the image once on a fresh machine
async def test_jobs_run_in_real_vms_booted_from_the_golden_image(guest_image: BuiltImage, tmp_path: Path):
    qemu = QemuConfig(images={LABEL: QemuImage(path=Path(guest_image.path), vcpus=1, ram="1G")},
                      state_dir=tmp_path / "vms", stop_grace=Seconds(5))
    settings = local_settings(
        tmp_path, labels=(LABEL,), capacity=2, drivers=DriverConfig(driver="qemu", qemu=qemu),
        timeouts__prepare=Seconds(120), timeouts__boot=Seconds(60), timeouts__runner=Seconds(BOOT),
        timeouts__job=Seconds(600), timeouts__runner_silence=Seconds(120), timeouts__teardown=Seconds(60))
    driver = ForgingDriver(qemu, forged={"bad-token"})
    steps = ('cat hello.txt; echo "host=$(hostname) image=$(cat /etc/solstice/image)"',
             'python3 -c "import sys; print(\'python\', sys.version.split()[0])"; echo "kernel=$(uname -s)"')
    in_vm = job("in-vm", label=LABEL, steps=steps)
    with served_repo(tmp_path / "repo") as (url, sha):
        in_vm.checkout.clone_url, in_vm.checkout.sha = url, sha
        async with local_node(settings, driver=driver) as node:
            await node.publish(in_vm, job("bad-token", label=LABEL, steps=("echo never",)))

            async def ended(job_id: str):
                record = await node.store.get_job(job_id)
                return record if record is not None and record.state.terminal else None
            good = await async_wait_until(lambda: ended("in-vm"), timeout=BOOT + 300, what="the job in the VM")
            bad = await async_wait_until(lambda: ended("bad-token"), timeout=BOOT + 300, what="the forged job")
            assert good.state is JobState.SUCCEEDED, good.reason  # before reading a log it may not have
            steps_run = await node.store.steps("in-vm", 1)
            lines = [line.content.decode() for line in
                     await (await node.node.parts.gateway.logstore.open("in-vm", 1, create=False)).read_all()]
            events = {j: node.events.job_states(j) for j in ("in-vm", "bad-token")}
            owned = await driver.list_owned()
    vm = vm_name("in-vm", 1)

    assert good.state is JobState.SUCCEEDED, good.reason
    assert [(s.index, s.state) for s in steps_run] == [(0, StepState.SUCCEEDED), (1, StepState.SUCCEEDED)]
    # cloud-init named the guest after the VM (meta-data), the image names itself, the logs came home.
    assert "hello from the host's git" in lines  # the commit was checked out in the guest
    assert f"host={vm} image={guest_image.image_id}" in lines
    assert any(line.startswith("python 3.11") for line in lines) and "kernel=Linux" in lines
    assert events["in-vm"][-2:] == [JobState.RUNNING, JobState.SUCCEEDED]

    assert bad.state is JobState.ERRORED
    assert "stopped before its runner called in: the guest powered off" in bad.reason
    assert "the orchestrator refused the call: the job token is not valid" in bad.reason  # from the console
    assert JobState.RUNNING not in events["bad-token"]
    assert owned == set(), "every VM is torn down"
