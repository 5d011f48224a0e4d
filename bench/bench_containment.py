"""What containing a local job costs: namespaces + cgroup set-up and teardown, against a bare runner start.

Run (as root, where the local driver can contain jobs):
    .venv/bin/python bench/bench_containment.py [--jobs N]

Each job is the real ``solstice-runner`` against a real RunnerService on
loopback, running one step (``true``), through the local driver twice: plain
(``contain: false``, a runner process in its own session) and contained
(unshare PID + mount namespaces, the namespace init, a cgroup with limits,
steps as the job user). Per phase, the median over N jobs:

    prepare    directories (+ contained: the cgroup and its limits)
    boot       starting the runner (+ unshare, the init, joining the cgroup, mounts)
    call-in    boot returned -> the runner's first call (its own start-up: Python, gRPC)
    job        first call -> Complete (checkout, one step; contained: hand-over to the job user)
    teardown   stop + destroy (+ contained: cgroup kill, rmdir)

"bare runner start" is plain boot + call-in: what any local job pays to get
a runner. The containment cost is contained minus plain over the set-up
(prepare + boot + call-in) and teardown phases, and the ratio is that cost
over the bare runner start. Not part of the test suite; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.bootstrap import RunnerBootstrap  # noqa: E402
from common.rpc import jobs_pb2  # noqa: E402
from orchestrator.catalog import LocalConfig  # noqa: E402
from orchestrator.drivers.base import VmSpec  # noqa: E402
from orchestrator.drivers.local import LocalDriver  # noqa: E402
from tests.protocol.harness import assigned, orchestrator  # noqa: E402
from tests.runner.helpers import make_repo  # noqa: E402

RUNNER = str(Path(sys.executable).parent / "solstice-runner")
PHASES = ("prepare", "boot", "call-in", "job", "teardown")


async def one_job(driver: LocalDriver, orch, repo, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    job = assigned(f"job-bench-{n}", [jobs_pb2.Step(name="True", run="true")], clone_url=repo.url, sha=repo.sha)
    session = orch.gateway.assign(job)
    spec = VmSpec.for_job(job.job_id, 1, "bench", RunnerBootstrap(orch.server.address, session.token))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    await driver.prepare(spec)
    t1 = time.perf_counter()
    await driver.boot(spec)
    t2 = time.perf_counter()
    await driver.wait_ready(spec, session.connected, 60)
    t3 = time.perf_counter()
    outcome = await asyncio.wait_for(session.wait_finished(), 60)
    t4 = time.perf_counter()
    await driver.stop(spec.name)
    await driver.destroy(spec.name)
    t5 = time.perf_counter()
    await orch.gateway.release(job.job_id, 1)
    if outcome.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"the bench job did not succeed: {outcome.reason}")
    for name, (a, b) in zip(PHASES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
        times[name] = (b - a) * 1000
    return times


async def run(mode: str, jobs: int, root: Path) -> dict[str, float]:
    repo = make_repo(root / f"repo-{mode}", {"hello.txt": "hello\n"})
    cfg = LocalConfig(state_dir=root / f"vms-{mode}", runner_argv=(RUNNER, "run", "--pipe-grace", "1"),
                      stop_grace=5.0, contain=mode == "contained")  # type: ignore[arg-type]
    driver = LocalDriver(cfg)
    if mode == "contained" and not driver.contain.isolated:
        raise SystemExit(f"this host cannot contain jobs: {driver.contain.why_not_isolated}")
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    async with orchestrator(root / f"logs-{mode}") as orch:
        await one_job(driver, orch, repo, -1)  # warm-up: page cache, first imports
        for n in range(jobs):
            for phase, ms in (await one_job(driver, orch, repo, n)).items():
                samples[phase].append(ms)
    await driver.aclose()
    return {phase: statistics.median(values) for phase, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-containment-") as tmp:
        plain = asyncio.run(run("plain", args.jobs, Path(tmp)))
        contained = asyncio.run(run("contained", args.jobs, Path(tmp)))
    print(f"median over {args.jobs} jobs of one step, ms")
    print(f"{'phase':10} {'plain':>9} {'contained':>10} {'added':>8}")
    for phase in PHASES:
        print(f"{phase:10} {plain[phase]:9.1f} {contained[phase]:10.1f} {contained[phase] - plain[phase]:8.1f}")
    bare_start = plain["boot"] + plain["call-in"]
    setup_teardown = ("prepare", "boot", "call-in", "teardown")
    cost = sum(contained[p] - plain[p] for p in setup_teardown)
    print(f"bare runner start (plain boot + call-in): {bare_start:.1f} ms")
    print(f"containment set-up + teardown cost:       {cost:.1f} ms per job")
    print(f"ratio to a bare runner start:             {cost / bare_start:.2f}")
    whole_plain = sum(plain.values())
    print(f"whole job, plain -> contained:            {whole_plain:.1f} -> {sum(contained.values()):.1f} ms "
          f"(x{sum(contained.values()) / whole_plain:.2f})")


if __name__ == "__main__":
    main()
