"""Contained local jobs, with real namespaces and cgroups where this machine has them (CI runs as root).

The host is probed once (``detect_containment``) and the result printed: on a
host that cannot contain jobs (not Linux, not root) the contained cases are
skipped with that reason, and the refusal of untrusted jobs - which holds on
every host - is still tested.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from orchestrator.catalog import LocalConfig, LocalLimits
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.errors import JobRefused
from orchestrator.drivers.local import LocalDriver, process_start_time
from orchestrator.drivers.local_contain import REFUSAL, RUNNER_ENV, detect_containment
from tests.drivers.support import CALLIN, Gateway
from tests.procs import children, pid_namespace
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo
from tests.waiting import async_wait_until

RUNNER = str(Path(sys.executable).parent / "solstice-runner")
HOST = detect_containment(LocalConfig())
print(f"\nlocal driver on this host: {HOST.summary}")  # noqa: T201 - "detect and say"
contained_host = pytest.mark.skipif(not HOST.isolated, reason=f"this host cannot isolate jobs: {HOST.why_not_isolated}")


def config(tmp_path: Path, **changes) -> LocalConfig:  # type: ignore[no-untyped-def]
    return LocalConfig(state_dir=tmp_path / "local", runner_argv=(RUNNER, "run", "--pipe-grace", "1"),
                       stop_grace=2.0, **changes)  # type: ignore[arg-type]


async def run_steps(tmp_path: Path, cfg: LocalConfig, steps: list[jobs_pb2.Step], during=None,  # type: ignore[no-untyped-def]
                    label: str = "any"):
    """Run a job of ``steps`` through a contained LocalDriver; (outcome or None, stdout by step, driver, spec)."""
    repo = make_repo(tmp_path / "repo", {"hello.txt": "hello\n"})
    driver = LocalDriver(cfg)
    outcome = None
    async with orchestrator(tmp_path / "logs") as orch:
        job = assigned("job-box", steps, clone_url=repo.url, sha=repo.sha, grace=0.5)
        session = orch.gateway.assign(job)
        spec = VmSpec.for_job(job.job_id, 1, label, RunnerBootstrap(orch.server.address, session.token))
        try:
            await driver.prepare(spec)
            await driver.boot(spec)
            await driver.wait_ready(spec, session.connected, 60)
            if during is not None:
                await during(driver, spec, session)
            else:
                outcome = await asyncio.wait_for(session.wait_finished(), 90)
            lines = await (await session.log()).read_all()
        finally:
            await driver.destroy(spec.name)
            await driver.aclose()
    by_step: dict[int, list[str]] = {}
    for line in lines:
        if line.stream == STDOUT:
            by_step.setdefault(line.step, []).append(line.text())
    return outcome, by_step, driver, spec


@contained_host
async def test_a_contained_job_sees_its_own_processes_only_as_the_job_user(tmp_path: Path):
    cfg = config(tmp_path)
    steps = [
        jobs_pb2.Step(name="Who", run="id -un; stat -c '%U %a' .; echo \"$HOME $TMPDIR\"; grep -c . /proc/self/cgroup"),
        jobs_pb2.Step(name="Procs", run="ls -d /proc/[0-9]* | wc -l; cat /proc/*/environ 2>/dev/null "
                                         "| tr '\\0' '\\n' | grep -c '^SOLSTICE_RUNNER_' || true"),
        jobs_pb2.Step(name="Cgroup",
                      run="grep -h solstice- /proc/self/cgroup | sed 's/.*solstice-/solstice-/' | sort -u"),
    ]
    outcome, out, driver, spec = await run_steps(tmp_path, cfg, steps)
    assert outcome is not None and outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED, outcome
    user, mode, dirs, _ = out[0]
    assert user == HOST.user.name  # type: ignore[union-attr]
    assert mode == f"{HOST.user.name} 700"  # type: ignore[union-attr]
    assert dirs == f"{cfg.job_mount}/home {cfg.job_mount}/home/tmp"
    count, tokens = (int(x) for x in out[1])
    # Its own namespace: the init, the runner, the step's shell and its commands - not this host's hundreds.
    assert count < 12 and tokens == 0
    assert out[2] == [spec.name]  # every process of the job is in the job's cgroup
    # Torn down: no directory, no cgroup.
    assert not (cfg.state_dir / spec.name).exists()
    assert await driver.list_owned() == set()


@contained_host
async def test_the_runner_gets_an_allowlisted_environment(tmp_path: Path, gateway: Gateway, monkeypatch):
    monkeypatch.setenv("SOLSTICE_FORGEJO_TOKEN", "node-secret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-node-secret")
    cfg = LocalConfig(state_dir=tmp_path / "local", runner_argv=(sys.executable, str(CALLIN)), stop_grace=2.0)
    driver = LocalDriver(cfg)
    spec = gateway.spec()
    try:
        await driver.prepare(spec)
        await driver.boot(spec)
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
        unshare = driver._procs[spec.name].pid
        [init] = children(unshare)
        [runner] = children(init)
        assert pid_namespace(runner) != pid_namespace(unshare)  # the runner is inside the job's namespace
        environ = Path(f"/proc/{runner}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    finally:
        await driver.destroy(spec.name)
        await driver.aclose()
    assert names <= {*RUNNER_ENV, "HOME", "SOLSTICE_RUNNER_ORCHESTRATOR", "SOLSTICE_RUNNER_TOKEN",
                     "SOLSTICE_RUNNER_DIR", "SOLSTICE_RUNNER_STEP_USER"}
    assert {"SOLSTICE_RUNNER_TOKEN", "SOLSTICE_RUNNER_DIR", "PATH"} <= names
    assert not (b"node-secret-value" in b"".join(environ) or b"another-node-secret" in b"".join(environ))


# Everything still in the step's process group dies when the step ends (runner/steps.py); these leave it.
ESCAPES = (
    "setsid sleep 1001 & "                                          # a new session
    "( (exec setsid sleep 1002 &) & ) ; "                           # a daemon's double fork
    "setsid bash -c 'trap \"\" TERM HUP INT; exec sleep 1003' & "   # a new session, ignoring SIGTERM
    "setsid --fork sleep 1004 ; "                                   # setsid(1) forking on its own
    # Done once all four lead sessions of their own: before that the step's group kill could still get them.
    "until [ $(for p in /proc/[0-9]*; do [ \"$(awk '{print $6}' $p/stat 2>/dev/null)\" = \"${p#/proc/}\" ] "
    "&& tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 100') -ge 4 ]; do sleep 0.05; done; "
    "echo spawned"
)


def escaped(namespace: str) -> dict[int, str]:
    """Host pid -> cmdline of the job's escaped sleeps."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or pid_namespace(int(entry.name)) != namespace:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmdline.startswith("sleep 100"):
            found[int(entry.name)] = cmdline
    return found


@contained_host
async def test_setsid_double_fork_and_term_ignoring_escapes_all_die_at_teardown(tmp_path: Path):
    cfg = config(tmp_path)
    steps = [jobs_pb2.Step(name="Escape", run=ESCAPES), jobs_pb2.Step(name="Wait", run="sleep 300")]
    seen: dict[int, str] = {}
    starts: dict[int, str | None] = {}

    async def during(driver: LocalDriver, spec: VmSpec, session) -> None:  # type: ignore[no-untyped-def]
        unshare = driver._procs[spec.name].pid
        namespace = pid_namespace(children(unshare)[0])
        assert namespace is not None and namespace != pid_namespace(unshare)
        found = await async_wait_until(lambda: (lambda f: f if len(f) == 4 else None)(escaped(namespace)),
                                       timeout=60, what="the four escaped processes")
        seen.update(found)
        starts.update({pid: process_start_time(pid) for pid in found})
        assert all(starts.values())
        await driver.stop(spec.name)  # teardown while the job runs

    await run_steps(tmp_path, cfg, steps, during=during)
    assert sorted(seen.values()) == ["sleep 1001", "sleep 1002", "sleep 1003", "sleep 1004"]
    for pid in seen:  # dead, checked by pid (and start time: a recycled pid is another process)
        now = process_start_time(pid)
        assert now is None or now != starts[pid], f"{seen[pid]} (pid {pid}) survived the teardown"


@contained_host
async def test_the_task_and_memory_limits_bind_the_job(tmp_path: Path):
    cfg = config(tmp_path, label_limits={"small": LocalLimits(memory="256M", pids=64)})
    steps = [
        # The limit counts tasks: the runner's threads too. 100 more processes cannot all start.
        # (sh, not bash: bash retries a failed fork for seconds before it gives up.)
        jobs_pb2.Step(name="Forks", run="sh -c 'for i in $(seq 100); do sleep 5 & done' 2> errors || true; "
                                        "head -n1 errors; echo forked"),
        jobs_pb2.Step(name="Memory", run="head -c 1500M /dev/zero | tail > /dev/null"),
    ]
    outcome, out, _, _ = await run_steps(tmp_path, cfg, steps, label="small")
    assert outcome is not None
    refused, forked = out[0]
    assert "Cannot fork" in refused or "Resource temporarily unavailable" in refused, refused
    assert forked == "forked"
    memory = outcome.steps[1]
    assert memory.state == jobs_pb2.STEP_STATE_FAILED and memory.exit_code == 128 + 9  # the OOM killer's SIGKILL


async def test_untrusted_jobs_are_refused_where_they_cannot_be_isolated(tmp_path: Path, gateway: Gateway, caplog):
    cfg = LocalConfig(state_dir=tmp_path / "s", runner_argv=(sys.executable, str(CALLIN)),
                      job_user="solstice-no-such-user")
    driver = LocalDriver(cfg)
    assert not driver.contain.isolated
    untrusted = VmSpec.for_job("job-fork", 1, "any", RunnerBootstrap(gateway.address, "tok"), trusted=False)
    with pytest.raises(JobRefused) as refused:
        await driver.prepare(untrusted)
    assert str(refused.value) == REFUSAL == "this node cannot isolate untrusted jobs; see docs/security.md"
    assert not (cfg.state_dir / untrusted.name).exists()  # refused before anything was made
    trusted = VmSpec.for_job("job-own", 1, "any", RunnerBootstrap(gateway.address, "tok"))
    await driver.prepare(trusted)  # trusted jobs still run
    await driver.destroy(trusted.name)

    caplog.set_level(logging.WARNING)
    allowing = LocalDriver(LocalConfig(state_dir=tmp_path / "s2", runner_argv=(sys.executable, str(CALLIN)),
                                       contain=False, allow_untrusted=True))
    assert any("local.allow_untrusted is on" in r.getMessage() for r in caplog.records)
    await allowing.prepare(untrusted)
    await allowing.destroy(untrusted.name)


async def test_without_root_or_containment_jobs_run_as_plain_processes(tmp_path: Path):
    plain = detect_containment(LocalConfig(contain=False))
    assert not plain.contained and not plain.isolated and "local.contain is off" in plain.summary
