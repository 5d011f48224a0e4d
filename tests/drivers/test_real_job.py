"""A real job through each driver: the real ``solstice-runner`` against the real gRPC server.

bhyve: the fake ``zoneadm boot`` materialises the NoCloud seed from the
driver's user-data, and the fake guest starts the installed runner from it
(tests/fakes/illumos/vm.py). local: the driver starts the runner itself. In
both the job checks out a real git repository and its result and log are
asserted from what the orchestrator stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

from common.bootstrap import RunnerBootstrap
from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from orchestrator.catalog import BhyveConfig, LocalConfig
from orchestrator.drivers.base import Driver, VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.local import LocalDriver, process_start_time
from tests.fakes.illumos.host import FakeHost
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo
from tests.waiting import async_wait_until

RUNNER = str(Path(sys.executable).parent / "solstice-runner")
SECRET = "hunter2-but-longer"
NOTHING = {"zones": [], "links": [], "datasets": []}

STEPS = [
    jobs_pb2.Step(name="Read", run="cat hello.txt; test ! -e LATER"),
    jobs_pb2.Step(name="Where", run='pwd; echo "key=$API_KEY"'),
    jobs_pb2.Step(name="Encoded", run='printf %s "$API_KEY" | base64'),
    jobs_pb2.Step(name="Fail", run="echo failing; exit 4"),
    jobs_pb2.Step(name="Never", run="echo never"),
]


async def run_job(driver: Driver, tmp_path: Path, label: str) -> tuple:
    """Provision, run the job to its end, tear down; return (outcome, stdout by step, spec)."""
    repo = make_repo(tmp_path / "repo", {"hello.txt": "hello from git\n"})
    async with orchestrator(tmp_path / "logs") as orch:
        job = assigned("job-7f3a", STEPS, secrets={"API_KEY": SECRET}, clone_url=repo.url, sha=repo.sha)
        session = orch.gateway.assign(job)
        spec = VmSpec.for_job(job.job_id, job.attempt, label, RunnerBootstrap(orch.server.address, session.token))
        try:
            await driver.prepare(spec)
            await driver.boot(spec)
            await driver.wait_ready(spec, session.connected, 60)
            outcome = await asyncio.wait_for(session.wait_finished(), 90)
            lines = await (await session.log()).read_all()
        finally:
            await driver.stop(spec.name)
            await driver.destroy(spec.name)
            await orch.gateway.release(job.job_id, job.attempt)
    by_step: dict[int, list[str]] = {}
    for ln in lines:
        if ln.stream == STDOUT:
            by_step.setdefault(ln.step, []).append(ln.text())
    raw = (tmp_path / "logs" / job.job_id / "1.log").read_bytes()
    assert SECRET.encode() not in raw and base64.b64encode(SECRET.encode()) not in raw
    return outcome, by_step, spec


def assert_job(outcome, by_step) -> None:
    assert outcome.state == jobs_pb2.JOB_STATE_FAILED and "exit code 4" in outcome.reason
    assert [(s.state, s.exit_code) for s in outcome.steps] == [
        (jobs_pb2.STEP_STATE_SUCCEEDED, 0), (jobs_pb2.STEP_STATE_SUCCEEDED, 0),
        (jobs_pb2.STEP_STATE_SUCCEEDED, 0), (jobs_pb2.STEP_STATE_FAILED, 4), (jobs_pb2.STEP_STATE_SKIPPED, 0)]
    assert by_step[0] == ["hello from git"]
    assert by_step[1][1] == "key=***" and by_step[2] == ["***"]
    assert by_step[3] == ["failing"] and 4 not in by_step


async def test_real_job_through_the_fake_bhyve(fake_host: FakeHost, bhyve_cfg: BhyveConfig,
                                               tmp_path: Path):
    fake_host.set_runner([RUNNER])  # the image's solstice-runner; cloud-init's runcmd gives its arguments
    driver = BhyveDriver(bhyve_cfg)
    try:
        outcome, by_step, spec = await run_job(driver, tmp_path, "illumos-stable")
    finally:
        await driver.aclose()
    assert_job(outcome, by_step)
    # The step ran inside the fake guest the zone booted (not in the test process).
    assert by_step[1][0].startswith(str(fake_host.fs(f"/solstice/zones/{spec.name}/root/guest/work/")))
    assert ["zoneadm", "-z", spec.name, "boot"] in fake_host.calls()
    assert fake_host.owned() == NOTHING
    assert fake_host.vm_pids() == []


async def test_real_job_through_the_local_driver(tmp_path: Path):
    cfg = LocalConfig(state_dir=tmp_path / "local", runner_argv=(RUNNER, "run", "--log-format", "json"))
    driver = LocalDriver(cfg)
    try:
        outcome, by_step, spec = await run_job(driver, tmp_path, "ubuntu-22.04")
    finally:
        await driver.aclose()
    assert_job(outcome, by_step)
    # A contained job sees its directory at the neutral mount point; a plain one where it is.
    where = cfg.job_mount if driver.contain.contained else cfg.state_dir / spec.name / "work"
    assert by_step[1][0].startswith(str(where / "work"))
    assert await driver.list_owned() == set()
    assert not (cfg.state_dir / spec.name).exists()


async def test_local_driver_job_cancelled_mid_step(tmp_path: Path):
    """Cancellation reaches a runner the driver started; its step's process group dies (a plain,
    uncontained job: the step writes pids this test reads; test_contained.py has the contained case)."""
    marker, pid_file = tmp_path / "started", tmp_path / "sleeper.pid"
    repo = make_repo(tmp_path / "repo", {"a": "b"})
    cfg = LocalConfig(state_dir=tmp_path / "local", runner_argv=(RUNNER, "run"), contain=False)
    driver = LocalDriver(cfg)
    steps = [jobs_pb2.Step(name="Long", run=f"sleep 300 & echo $! > {pid_file}; touch {marker}; wait")]
    async with orchestrator(tmp_path / "logs") as orch:
        job = assigned("job-c", steps, clone_url=repo.url, sha=repo.sha, grace=0.5)
        session = orch.gateway.assign(job)
        spec = VmSpec.for_job("job-c", 1, "any", RunnerBootstrap(orch.server.address, session.token))
        try:
            await driver.prepare(spec)
            await driver.boot(spec)
            await driver.wait_ready(spec, session.connected, 60)
            await async_wait_until(marker.exists, timeout=60, what="the step to start")
            orch.gateway.cancel("job-c", 1, "cancelled by bob")
            outcome = await asyncio.wait_for(session.wait_finished(), 60)
            # The runner delivered its result and exits by itself.
            runner_pid = json.loads((cfg.state_dir / spec.name / "pid").read_text())["pid"]
            await async_wait_until(lambda: process_start_time(runner_pid) is None, timeout=30,
                                   what="the runner to exit")
        finally:
            await driver.destroy(spec.name)
            await driver.aclose()
    assert outcome.state == jobs_pb2.JOB_STATE_CANCELLED and outcome.reason == "cancelled by bob"
    assert outcome.steps[0].state == jobs_pb2.STEP_STATE_CANCELLED  # not failed: the cancel stopped it
    assert process_start_time(int(pid_file.read_text())) is None, "the step's child survived the cancel"
