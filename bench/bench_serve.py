"""``solstice serve`` end to end: N trivial jobs through a real single node, per capacity.

Run: .venv/bin/python bench/bench_serve.py [--jobs N] [--capacities 1,4]

For each capacity a fresh ``solstice serve`` process (SQLite, LocalQueue,
local driver: one real ``solstice-runner`` process per job) gets N
independent one-step jobs in one AdminService.Submit; the clock runs from the
submit to the last job's final state. Prints jobs/s, the median and the
slowest queued->finished time per job, and the speed-up of each capacity over
the first. ``cidev run`` of the same workflow (no server, every job at once)
is the reference. Not part of the test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # before kdl-py's stray `tests` package

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ciadm.client import AdminClient  # noqa: E402
from cidev.run_requests import workflow_requests  # noqa: E402
from common.rpc import admin_pb2, jobs_pb2  # noqa: E402
from common.workflow import parse_workflow  # noqa: E402
from tests.singlenode.harness import BIN, ServeProcess, git, git_repo  # noqa: E402

TERMINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED,
            jobs_pb2.JOB_STATE_ERRORED}


def workflow(jobs: int) -> str:
    body = "".join(f'  job id="j{i}" runs_on="bench" {{\n    step run="echo job {i}"\n  }}\n' for i in range(jobs))
    return f'workflow name="bench" {{\n{body}}}\n'


async def run_once(address: str, repo: Path, text: str) -> tuple[float, list[float]]:
    checkout = jobs_pb2.Checkout(forge="local", repo=str(repo), clone_url=str(repo), ref="refs/heads/main",
                                 sha=git(repo, "rev-parse", "HEAD"))
    requests = workflow_requests(parse_workflow(text, "bench.kdl"), checkout, origin="bench")
    async with AdminClient(address, timeout=30) as admin:
        started = time.monotonic()
        await admin.submit(requests)
        while True:
            jobs = await admin.list(admin_pb2.ListJobsRequest(run_id=requests[0].run_id, limit=1000))
            if len(jobs) == len(requests) and all(j.state in TERMINAL for j in jobs):
                break
            await asyncio.sleep(0.05)
        wall = time.monotonic() - started
    failed = [j.job_id for j in jobs if j.state != jobs_pb2.JOB_STATE_SUCCEEDED]
    if failed:
        raise SystemExit(f"{len(failed)} job(s) did not succeed, e.g. {failed[0]}")
    latencies = [j.finished_at.ToDatetime().timestamp() - j.created_at.ToDatetime().timestamp() for j in jobs]
    return wall, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--capacities", default="1,4")
    args = parser.parse_args()
    text = workflow(args.jobs)
    print(f"{args.jobs} one-step jobs, one runner process each")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        repo = git_repo(Path(tmp) / "repo", text)
        first = None
        for capacity in (int(c) for c in args.capacities.split(",")):
            node = ServeProcess(Path(tmp) / f"data-{capacity}", env={"SOLSTICE_CAPACITY": str(capacity)}).start()
            try:
                wall, latencies = asyncio.run(run_once(node.admin, repo, text))
            finally:
                node.stop()
            first = first or wall
            print(f"solstice serve, capacity {capacity}: {wall:6.2f} s  {args.jobs / wall:5.2f} jobs/s  "
                  f"queued->finished median {statistics.median(latencies):5.2f} s, max {max(latencies):5.2f} s  "
                  f"speed-up x{first / wall:.2f}")
        started = time.monotonic()
        done = subprocess.run([str(BIN / "cidev"), "run"], cwd=repo, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"cidev run failed:\n{done.stdout}{done.stderr}")
        print(f"cidev run (reference, all at once): {wall:6.2f} s  {args.jobs / wall:5.2f} jobs/s  "
              f"(x{first / wall:.2f} of the first serve run)")


if __name__ == "__main__":
    main()
