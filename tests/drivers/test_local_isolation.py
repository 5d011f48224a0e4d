"""The local driver's ``isolate_network``: a job reaches the orchestrator and nothing else."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from orchestrator.catalog import LocalConfig
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.local import LocalDriver
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo

RUNNER = str(Path(sys.executable).parent / "solstice-runner")

# bash rather than Python: a contained job's steps run as the job user, who may not reach this
# interpreter (a venv's base Python can live under /root).
PROBE = """\
readlink /proc/self/ns/net
if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "reached the outside"
else
    echo "no network: connect failed"
fi
"""


async def run_probe(tmp_path: Path, isolate: bool) -> tuple[list[str], int, str, str]:
    """Run a job whose step tries to reach a TCP server of the test; return
    (step stdout, connections the server saw, the step's net namespace, ours)."""
    seen = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        writer.close()

    outside = await asyncio.start_server(count, "127.0.0.1", 0)
    port = outside.sockets[0].getsockname()[1]
    repo = make_repo(tmp_path / "repo", {"probe.sh": PROBE})  # in the checkout: a contained job's user reads it
    cfg = LocalConfig(state_dir=tmp_path / "local", runner_argv=(RUNNER, "run"), isolate_network=isolate,
                      relay_dir=Path("/tmp") / f"srt-{os.getpid()}-{int(isolate)}")
    driver = LocalDriver(cfg)
    steps = [jobs_pb2.Step(name="Probe", run=f"bash probe.sh {port}"),
             jobs_pb2.Step(name="Hello", run="echo hello from the job")]
    try:
        async with orchestrator(tmp_path / "logs") as orch:
            session = orch.gateway.assign(assigned("job-iso", steps, clone_url=repo.url, sha=repo.sha))
            spec = VmSpec.for_job("job-iso", 1, "any", RunnerBootstrap(orch.server.address, session.token))
            try:
                await driver.prepare(spec)
                await driver.boot(spec)
                await driver.wait_ready(spec, session.connected, 60)
                outcome = await asyncio.wait_for(session.wait_finished(), 90)
                lines = await (await session.log()).read_all()
            finally:
                await driver.destroy(spec.name)
                await driver.aclose()
    finally:
        outside.close()
        await outside.wait_closed()
        shutil.rmtree(cfg.relay_dir, ignore_errors=True)
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED, outcome.reason
    assert not (cfg.relay_dir / f"{spec.name}.sock").exists()
    step_ns, *out = [ln.text() for ln in lines if ln.stream == STDOUT]
    return out, seen, step_ns, os.readlink("/proc/self/ns/net")


@pytest.mark.skipif(not Path("/proc/self/ns/net").exists(), reason="network namespaces are Linux-only")
async def test_isolated_job_reaches_nothing_but_still_reports(tmp_path: Path):
    out, seen, runner_ns, ours = await run_probe(tmp_path, isolate=True)
    assert runner_ns != ours
    assert out[0].startswith("no network:") and out[1] == "hello from the job"
    assert seen == 0


async def test_without_isolation_the_same_probe_gets_out(tmp_path: Path):
    """The control: the probe does detect a reachable network."""
    out, seen, runner_ns, ours = await run_probe(tmp_path, isolate=False)
    assert runner_ns == ours
    assert out[0] == "reached the outside" and seen == 1
