"""Log throughput: a step running ``seq 1 N`` until every line is durable on the orchestrator.

Run: .venv/bin/python bench/bench_logs.py [--lines 1000000] [--runs 3]

A real runner subprocess runs a one-step job against an in-process
orchestrator (gRPC on loopback, log store in a temporary directory). The
clock starts at the step's start (the runner's "step 1" line, stamped just
before the step process is spawned) and stops when the orchestrator has
fdatasync'ed the line holding N. Prints lines/s and MB/s for each run, and
the ratio to ``seq 1 N > file`` (no network, no fsync) on the same machine.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.logbatch import STDOUT, SYSTEM  # noqa: E402
from common.rpc import jobs_pb2  # noqa: E402
from tests.protocol.harness import assigned, orchestrator  # noqa: E402
from tests.runner.helpers import make_repo, runner_exit, start_runner  # noqa: E402


async def one_run(tmp: Path, lines: int) -> tuple[float, int]:
    """Seconds from step start to the last line durable, and the bytes of output."""
    repo = make_repo(tmp / "repo", {"README": "bench\n"})
    async with orchestrator(tmp / "logs") as orch:
        job = assigned("bench", [jobs_pb2.Step(name="seq", run=f"seq 1 {lines}")], clone_url=repo.url, sha=repo.sha)
        session = orch.gateway.assign(job)
        proc = await start_runner(orch.server.address, session.token, tmp / "vm")
        joblog = await session.log()
        history: list[tuple[float, int]] = []
        watcher_done = asyncio.Event()

        async def watch() -> None:
            while not joblog.closed:
                await joblog.changed()
                history.append((time.time(), joblog.highest_sequence))
            watcher_done.set()

        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch())
            outcome = await session.wait_finished()
            await watcher_done.wait()
            watcher.cancel()
        code, stderr = await runner_exit(proc)
        if code != 0 or outcome.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            raise SystemExit(f"bench job failed ({outcome.reason}):\n{stderr[-2000:]}")
        stored = await joblog.read_all()
    start = next(ln.at for ln in stored if ln.stream == SYSTEM and ln.step == 0)
    out = [ln for ln in stored if ln.step == 0 and ln.stream == STDOUT]
    assert len(out) == lines and out[-1].content == str(lines).encode(), "lines missing"
    target = out[-1].sequence
    durable_at = next(t for t, seq in history if seq >= target)
    return durable_at - start, sum(len(ln.content) + 1 for ln in out)


def baseline(tmp: Path, lines: int) -> float:
    out = tmp / "seq.out"
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f"seq 1 {lines} > {out}"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    times = []
    size = 0
    for run in range(opts.runs):
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
            seconds, size = asyncio.run(one_run(Path(tmp), opts.lines))
        times.append(seconds)
        print(f"run {run + 1}: {seconds:.3f} s  {opts.lines / seconds:,.0f} lines/s  "
              f"{size / seconds / 1e6:.1f} MB/s")
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        base = min(baseline(Path(tmp), opts.lines) for _ in range(opts.runs))
    best, median = min(times), statistics.median(times)
    print(f"\n{opts.lines:,} lines ({size / 1e6:.1f} MB), step start -> durable in the orchestrator's log store")
    print(f"  best   {best:.3f} s  {opts.lines / best:,.0f} lines/s  {size / best / 1e6:.1f} MB/s")
    print(f"  median {median:.3f} s  {opts.lines / median:,.0f} lines/s  {size / median / 1e6:.1f} MB/s")
    print(f"  seq 1 {opts.lines} > file: {base:.3f} s")
    print(f"  ratio (median / seq > file): {median / base:.1f}x   target: all lines durable within 3 s "
          f"-> {'met' if median <= 3.0 else 'NOT met'} ({median:.2f} s)")


if __name__ == "__main__":
    main()
