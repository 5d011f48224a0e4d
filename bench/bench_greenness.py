"""Greenness at size: recording 10,000 commits x 20 jobs through the recorder, then last-green query times.

Run: .venv/bin/python bench/bench_greenness.py [--commits 10000] [--jobs 20] [--store sqlite|postgres|both]
                                               [--pg postgresql://postgres@127.0.0.1/test] [--repeat 500]

Every commit reaches one queue through ``GreennessRecorder.prepare`` (the
build path's call: the commit and its 20 expected jobs) and then each job's
terminal outcome through ``GreennessRecorder.record`` (the event handler's
call: one outcome, then the commit judged in its transaction) - 20 outcomes
per commit, 1 % of jobs failing, so some commits are not green and
last-green moves back and forth, with one hook following the queue (each
transition writes its delivery). Prints the recording rate (outcomes/s and
commits/s, ms per outcome), then the median, p95 and max of the read paths
at that size: last-green (``scope_state``: what the API, the badge and
``ciadm last-green`` read), the newest 50 verdicts, and the dashboard
column's lookup of 50 commits. PostgreSQL runs in a scratch database
created and dropped here. Figures only: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.workflow.parser import parse_workflow  # noqa: E402
from integration.events import BuildRequested, Forge, Repo  # noqa: E402
from integration.greenness.model import QueueKey  # noqa: E402
from integration.greenness.recorder import GreennessRecorder  # noqa: E402
from integration.greenness.settings import GreennessSettings, HookSettings  # noqa: E402
from integration.greenness.store import SqlGreennessStore, open_greenness_store  # noqa: E402
from integration.jobs import job_requests  # noqa: E402

REPO = Repo(Forge.FORGEJO, "bench/mono", "https://forge.test/bench/mono.git")
QUEUE = QueueKey("forgejo", "bench/mono", "refs/heads/main")
FAIL_RATE = 0.01


def sha(n: int) -> str:
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


def stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):.2f} ms, p95 {p95:.2f} ms, max {ms[-1]:.2f} ms"


async def timed(repeat: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def run(label: str, store: SqlGreennessStore, commits: int, jobs: int, repeat: int) -> None:
    names = [f"job{i:02d}" for i in range(jobs)]
    workflow = parse_workflow("workflow {\n" + "".join(
        f'  job id="{n}" runs_on="illumos-stable" {{\n    step run="make {n}"\n  }}\n' for n in names) + "}\n")
    settings = GreennessSettings(enabled=True, hooks={"deploy": HookSettings(command=("/bin/true",))})
    recorder = GreennessRecorder(settings, store)
    rng = random.Random(23)
    started = time.perf_counter()
    prepare_time = 0.0
    for n in range(commits):
        commit, run_id = sha(n), f"run-{n}"
        build = BuildRequested(REPO, QUEUE.ref, commit, "bench push")
        t0 = time.perf_counter()
        await recorder.prepare(build, run_id, workflow, job_requests(workflow, build, run_id))
        prepare_time += time.perf_counter() - t0
        for name in names:
            state = "failed" if rng.random() < FAIL_RATE else "succeeded"
            await recorder.record(QUEUE, commit, name, run_id, 1, state, "exit 1" if state == "failed" else "")
        if n and n % 2000 == 0:
            print(f"{label}: {n:,} commits recorded ({time.perf_counter() - started:.0f}s)", flush=True)
    elapsed = time.perf_counter() - started
    outcomes = commits * jobs
    print(f"{label}: recorded {commits:,} commits x {jobs} jobs in {elapsed:.1f}s: {outcomes / elapsed:,.0f} outcomes/s, "
          f"{commits / elapsed:,.0f} commits/s ({(elapsed - prepare_time) / outcomes * 1000:.2f} ms per outcome, "
          f"{prepare_time / commits * 1000:.2f} ms per commit arriving); {recorder.transitions:,} transitions")
    state = await store.scope_state(QUEUE)
    print(f"{label}: last green {state.last_green.sha[:12] if state.last_green else 'none'} "
          f"(seq {state.last_green.seq if state.last_green else '-'}), newest decided {state.head.sha[:12] if state.head else '-'}")
    print(f"{label}: last-green query ({repeat}x): {stats(await timed(repeat, lambda: store.scope_state(QUEUE)))}")
    print(f"{label}: newest 50 verdicts ({repeat}x): {stats(await timed(repeat, lambda: store.commits(QUEUE, limit=50)))}")
    shas = [sha(n) for n in range(commits - 50, commits)]
    print(f"{label}: dashboard column, 50 commits ({repeat}x): "
          f"{stats(await timed(repeat, lambda: store.verdicts_of('forgejo', 'bench/mono', shas)))}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-greenness-") as tmp:
        if args.store in ("sqlite", "both"):
            store = open_greenness_store(str(Path(tmp) / "integration.sqlite"))
            await store.open()
            try:
                await run("sqlite", store, args.commits, args.jobs, args.repeat)
            finally:
                await store.close()
        if args.store in ("postgres", "both"):
            database = f"solstice_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(args.pg)
            await admin.execute(f'CREATE DATABASE "{database}"')
            try:
                store = open_greenness_store(args.pg.rsplit("/", 1)[0] + "/" + database)
                await store.open()
                try:
                    await run("postgres", store, args.commits, args.jobs, args.repeat)
                finally:
                    await store.close()
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
