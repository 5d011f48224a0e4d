"""Caches on bhyve through the fake ZFS: a run saves its cache disk (rename + snapshot, no copy), the
next run's VM gets a ``zfs clone`` of it as its second disk, and a fork's pull request reads the base
branch's cache but never saves one. The real runner runs in the fake guest against a real gRPC server."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

from common.bootstrap import RunnerBootstrap
from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from orchestrator.caches import cache_scope
from orchestrator.catalog import BhyveConfig
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.runnerapi import AssignedJob
from tests.fakes.illumos.host import FakeHost
from tests.fakes.illumos.zfs import data_dir
from tests.protocol.harness import orchestrator
from tests.runner.helpers import make_repo

RUNNER = str(Path(sys.executable).parent / "solstice-runner")
ROOT = "rpool/solstice/caches"
CACHE = jobs_pb2.CacheSpec(name="deps", key="deps-{{ hash deps.lock }}", path="deps", restore_keys=["deps-"])
# Files are replaced, never rewritten in place (the fake's clones share their snapshot's files).
STEP = "cat deps/stamp 2>/dev/null || echo empty; (cat deps/stamp 2>/dev/null || true; echo run) > new; mv new deps/stamp"


def request(job_id: str, repo, *, trusted: bool = True, pull: int = 0) -> jobs_pb2.JobRequest:  # type: ignore[no-untyped-def]
    req = jobs_pb2.JobRequest(schema_version=1, job_id=job_id, key="build", runs_on="illumos-stable",
                              trusted=trusted, caches=[CACHE], cache_base_ref="refs/heads/main" if pull else "")
    req.checkout.forge, req.checkout.repo = "github", "o/r"
    req.checkout.clone_url, req.checkout.sha = repo.url, repo.sha
    req.checkout.ref = f"refs/pull/{pull}/head" if pull else "refs/heads/main"
    req.checkout.pull_request = pull
    req.steps.add(name="Use", run=STEP)
    return req


async def run(driver: BhyveDriver, orch, req: jobs_pb2.JobRequest) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Run one job to its end and tear its VM down; (step output, system notes)."""
    session = orch.gateway.assign(AssignedJob(req.job_id, 1, req))
    spec = dataclasses.replace(
        VmSpec.for_job(req.job_id, 1, req.runs_on, RunnerBootstrap(orch.server.address, session.token),
                       trusted=req.trusted), caches=tuple(req.caches), cache_scope=cache_scope(req))
    try:
        await driver.prepare(spec)
        await driver.boot(spec)
        await driver.wait_ready(spec, session.connected, 60)
        outcome = await asyncio.wait_for(session.wait_finished(), 90)
        lines = await (await session.log()).read_all()
    finally:
        await driver.stop(spec.name)
        await driver.destroy(spec.name)
        await orch.gateway.release(req.job_id, 1)
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED, outcome.reason
    return [ln.text() for ln in lines if ln.stream == STDOUT], [ln.text() for ln in lines if ln.stream != STDOUT]


def saved(host: FakeHost) -> dict[str, dict]:  # type: ignore[type-arg]
    return {n: d for n, d in host.state()["datasets"].items()
            if n.startswith(f"{ROOT}/") and not n.startswith(f"{ROOT}/vms") and d["type"] == "volume"}


async def test_a_cache_disk_saved_by_one_run_is_cloned_into_the_next(
        fake_host: FakeHost, bhyve_cfg: BhyveConfig, tmp_path: Path) -> None:
    fake_host.set_runner([RUNNER])
    driver = BhyveDriver(dataclasses.replace(bhyve_cfg, cache_dataset=ROOT, cache_volume_size="1G"))
    repo = make_repo(tmp_path / "repo", {"deps.lock": "serde 1\n"})
    try:
        async with orchestrator(tmp_path / "logs") as orch:
            orch.gateway.disk_caches = driver.caches
            out, notes = await run(driver, orch, request("job-c1", repo))
            assert out == ["empty"]
            assert any(n.startswith('cache "deps": nothing saved for key deps-') for n in notes), notes
            assert any("will be saved under key deps-" in n for n in notes), notes
            [(name, volume)] = saved(fake_host).items()  # renamed from the VM's disk: no copy
            assert volume["user_props"]["solstice:cache-key"].startswith("deps-")
            assert f"{name}@saved" in fake_host.state()["datasets"]
            assert (data_dir(f"{name}@saved") / "stamp").read_text() == "run\n"

            # The next run, a fork's pull request onto main: it reads main's cache through a clone...
            out, notes = await run(driver, orch, request("job-c2", repo, trusted=False, pull=9))
            assert out == ["run"]  # what run 1 wrote
            vm2 = VmSpec.for_job("job-c2", 1, "x", RunnerBootstrap("a:1", "t")).name
            assert ["zfs", "clone", f"{name}@saved", f"{ROOT}/vms/{vm2}-c0"] in fake_host.calls()
            assert any('restored from its key -> deps' in n for n in notes), notes
            # ...and saves none: its disk (which its step changed) went with its VM.
            assert any("caches are not saved: this job only restores them" in n for n in notes), notes
            assert list(saved(fake_host)) == [name]
            assert (data_dir(f"{name}@saved") / "stamp").read_text() == "run\n"
            vms = [n for n in fake_host.state()["datasets"] if n.startswith(f"{ROOT}/vms/")]
            assert vms == []  # every VM's cache disk went with its VM
            assert await driver.list_owned() == set()
    finally:
        await driver.aclose()


async def test_cache_disks_of_gone_vms_are_reconciled_and_old_caches_evicted(
        fake_host: FakeHost, bhyve_cfg: BhyveConfig) -> None:
    from tests.drivers.test_fake_tools import ok

    driver = BhyveDriver(dataclasses.replace(bhyve_cfg, cache_dataset=ROOT, cache_max_repo_bytes="2K"))
    assert driver.caches is not None
    try:
        # A VM's cache disk left by a process that died: the driver lists the VM, destroy takes the disk.
        ok(fake_host, "zfs", "create", "-p", "-V", "1G", f"{ROOT}/vms/solstice-0badf00d-1-c0")
        assert await driver.list_owned() == {"solstice-0badf00d-1"}
        await driver.destroy("solstice-0badf00d-1")
        assert await driver.list_owned() == set()
        # Three saved caches of 1 KiB under a 2 KiB bound: the least recently used goes.
        scope = cache_scope(request("job-e", type("R", (), {"url": "x", "sha": "a" * 40})()))
        for n, used in (("k1", "30"), ("k2", "10"), ("k3", "20")):
            name = f"{ROOT}/{scope.repo_id}/{n}"
            props = (("name", "deps"), ("key", f"deps-{n}"), ("branch", "main"), ("created", used), ("used", used))
            ok(fake_host, "zfs", "create", "-p", "-V", "1G",
               *(arg for prop, value in props for arg in ("-o", f"solstice:cache-{prop}={value}")), name)
            (data_dir(name) / "blob").write_bytes(b"x" * 1024)
        assert await driver.caches.evict(scope.repo_id) == [f"{ROOT}/{scope.repo_id}/k2"]
        assert sorted(s.key for s in await driver.caches.saved(scope.repo_id)) == ["deps-k1", "deps-k3"]
    finally:
        await driver.aclose()
