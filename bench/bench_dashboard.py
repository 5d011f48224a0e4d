"""Dashboard page render times with 1,000,000 jobs across 50 repositories, on SQLite and PostgreSQL.

Run: .venv/bin/python bench/bench_dashboard.py [--jobs 1000000] [--store sqlite|postgres|both]
                                               [--pg postgresql://postgres@127.0.0.1/test] [--repeat 20]

Seeds a history (120 days; 8 jobs per commit; main, feature branches and pull
requests; 85% succeeded, 9% failed with a failure note, 3% cancelled, 3%
errored; the last jobs still queued or running) straight into the tables - the
triggers of migration 006 fire for every job row as they do for a submit - then
derives the per-day tables with ``rebuild_dashboard`` (what the migration's data
step does for an existing database) and serves the dashboard over loopback
HTTP. Each page is fetched ``--repeat`` times; the time is the handler's own
(server side, measured by a middleware), printed as median, p95 and max, with
the ratio to the 200 ms budget (above 1 = within it). Also prints the seed and
rebuild times. PostgreSQL runs in a scratch database created and dropped here.
Figures only: the test suite never runs this file and nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.logbatch import STDOUT  # noqa: E402
from common.rpc import jobs_pb2, runner_pb2  # noqa: E402
from dashboard.app import Backing, Dashboard  # noqa: E402
from dashboard.logsource import LocalLogs  # noqa: E402
from orchestrator.logstore import LogStore  # noqa: E402
from orchestrator.store import JobState, Store, open_store  # noqa: E402

BUDGET_MS = 200.0
REPOS = 50
NAMES = ("build", "test", "lint", "docs", "e2e", "fmt", "audit", "package")
DAYS = 120
CHUNK = 50_000
JOB_COLUMNS = ("job_id", "run_id", "key", "name", "runs_on", "repo", "ref", "sha", "attempt", "created_at",
               "request", "forge", "pull_request")
ATTEMPT_COLUMNS = ("job_id", "attempt", "host", "state", "reason", "vm_name", "queued_at", "started_at",
                   "running_at", "finished_at", "updated_at")


def repo_of(r: int) -> tuple[str, str]:
    return ("github" if r < 40 else "forgejo"), f"org{r % 7}/repo-{r:02d}"


def history(total: int, now: float) -> Iterator[tuple[tuple[object, ...], tuple[object, ...], tuple | None]]:
    """(job row, attempt row, failure note row or None) for ``total`` jobs, oldest first."""
    rng = random.Random(21)
    span = DAYS * 86400.0
    commits = total // len(NAMES)
    for c in range(commits):
        r = c % REPOS
        forge, repo = repo_of(r)
        pick = rng.random()
        if pick < 0.7:
            ref, pr = "refs/heads/main", 0
        elif pick < 0.8:
            ref, pr = f"refs/heads/feature-{rng.randrange(10)}", 0
        else:
            pr = rng.randrange(1, 500)
            ref = f"refs/pull/{pr}/head"
        sha = f"{c:040x}"
        created = now - span + span * c / commits
        for k, name in enumerate(NAMES):
            n = c * len(NAMES) + k
            job_id = f"job-{n:08d}"
            request = jobs_pb2.JobRequest(
                schema_version=1, job_id=job_id, run_id=f"run-{c}", key=name, name=name, runs_on="ubuntu-22.04",
                checkout=jobs_pb2.Checkout(forge=forge, repo=repo, ref=ref, sha=sha, pull_request=pr,
                                           clone_url=f"https://example.org/{repo}.git"),
                steps=[jobs_pb2.Step(name="Build", run="make"), jobs_pb2.Step(name="Test", run="make test")],
                source=jobs_pb2.JOB_SOURCE_FORGE, origin="github push")
            job = (job_id, f"run-{c}", name, name, "ubuntu-22.04", repo, ref, sha, 1, created,
                   request.SerializeToString(), forge, pr)
            queue = rng.lognormvariate(3, 1)
            run = rng.lognormvariate(5.5, 0.8)
            roll = rng.random()
            recent = created > now - 600
            note = None
            if recent:
                state = JobState.RUNNING if roll < 0.5 else JobState.QUEUED
                attempt = (job_id, 1, "host-1" if state is JobState.RUNNING else "", int(state), "", "", created,
                           created + queue if state is JobState.RUNNING else None,
                           created + queue if state is JobState.RUNNING else None, None, created + queue)
            else:
                state = (JobState.SUCCEEDED if roll < 0.85 else JobState.FAILED if roll < 0.94
                         else JobState.CANCELLED if roll < 0.97 else JobState.ERRORED)
                running = None if state is JobState.ERRORED and roll > 0.99 else created + queue
                end = created + queue + run
                reason = "step 2 (Test) failed with exit code 1" if state is JobState.FAILED else ""
                attempt = (job_id, 1, f"host-{n % 8}", int(state), reason, f"vm-{n}", created, created + 1,
                           running, end, end)
                if state is JobState.FAILED:
                    note = (job_id, 1, 1, "Test", 40, "FAILED tests/test_thing.py::test_case - assert 3 == 4")
            yield job, attempt, note


def chunks(total: int, now: float) -> Iterator[tuple[list, list, list]]:
    jobs, attempts, notes = [], [], []
    for job, attempt, note in history(total, now):
        jobs.append(job)
        attempts.append(attempt)
        if note:
            notes.append(note)
        if len(jobs) >= CHUNK:
            yield jobs, attempts, notes
            jobs, attempts, notes = [], [], []
    if jobs:
        yield jobs, attempts, notes


def seed_sqlite(path: Path, total: int, now: float) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    jobs_sql = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
    attempts_sql = (f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)})"
                    f" VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})")
    for jobs, attempts, notes in chunks(total, now):
        with conn:
            conn.executemany(jobs_sql, jobs)
            conn.executemany(attempts_sql, attempts)
            conn.executemany("INSERT INTO failure_notes VALUES (?, ?, ?, ?, ?, ?)", notes)
    conn.close()


async def seed_postgres(dsn: str, total: int, now: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for jobs, attempts, notes in chunks(total, now):
            async with conn.transaction():
                await conn.copy_records_to_table("jobs", records=jobs, columns=list(JOB_COLUMNS))
                await conn.copy_records_to_table("attempts", records=attempts, columns=list(ATTEMPT_COLUMNS))
                await conn.copy_records_to_table("failure_notes", records=notes)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def write_log(logs: LogStore, job_id: str) -> None:
    joblog = await logs.open(job_id, 1)
    batch = runner_pb2.LogBatch(first_sequence=1)
    data = b"\n".join(b"\x1b[32mok\x1b[0m line %d of the test output <with> & markup" % i for i in range(2000))
    batch.runs.add(step=1, stream=STDOUT, at=1.0, lines=2000, data=data)
    await joblog.append(batch)
    await joblog.close()


def timed() -> tuple[list[float], web.middleware]:
    spent: list[float] = []

    @web.middleware
    async def measure(request: web.Request, handler):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            spent.append((time.perf_counter() - started) * 1000)

    return spent, measure


async def pages_of(store: Store) -> dict[str, str]:
    """The pages to time, found in the seeded data."""
    forge, repo = repo_of(0)
    commits = await store.ref_commits(forge, repo, "refs/heads/main", limit=1)
    deep = await store.ref_commits(forge, repo, "refs/heads/main", before_seq=commits[0].first_seq // 2, limit=1)
    refs = await store.repo_refs(forge, repo, limit=100)
    pr = next(r.pull_request for r in refs if r.pull_request)
    failed = await store.latest_failures(forge, repo, 0, 1)
    return {
        "summary, 7 days": "/?days=7",
        "summary, 30 days": "/?days=30",
        "matrix, main, newest": f"/{forge}/{repo}",
        "matrix, main, deep page": f"/{forge}/{repo}?before={deep[0].first_seq}",
        "matrix, feature branch": f"/{forge}/{repo}?ref=refs/heads/feature-3",
        "pull request": f"/{forge}/{repo}/pull/{pr}",
        "job (failed, 2000 log lines)": f"/jobs/{failed[0].job_id}",
        "job, search in its log": f"/jobs/{failed[0].job_id}?q=line+1999",
    }


async def measure(name: str, url: str, total: int, repeat: int, tmp: Path) -> None:
    async with open_store(url) as store, LogStore(tmp / f"logs-{name}") as logs:
        started = time.perf_counter()
        await store.rebuild_dashboard()
        print(f"{name}: rebuild_dashboard over {total:,} jobs: {time.perf_counter() - started:.1f}s")
        paths = await pages_of(store)
        await write_log(logs, paths["job (failed, 2000 log lines)"].rsplit("/", 1)[1])
        dashboard = Dashboard()
        dashboard.attach(Backing(store, LocalLogs(logs)))
        spent, middleware = timed()
        app = web.Application(middlewares=[middleware])
        dashboard.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            print(f"{'page':<32} {'median':>9} {'p95':>9} {'max':>9}  budget {BUDGET_MS:.0f} ms / p95")
            for label, path in paths.items():
                spent.clear()
                for _ in range(repeat):
                    answer = await client.get(path)
                    assert answer.status == 200, (path, answer.status, (await answer.text())[:300])
                    await answer.read()
                ordered = sorted(spent)
                p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
                print(f"{label:<32} {statistics.median(ordered):7.1f}ms {p95:7.1f}ms {ordered[-1]:7.1f}ms  "
                      f"{BUDGET_MS / p95:6.1f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        if args.store in ("sqlite", "both"):
            path = Path(tmp) / "state.sqlite"
            async with open_store(f"sqlite:///{path}"):
                pass  # the schema
            started = time.perf_counter()
            seed_sqlite(path, args.jobs, now)
            print(f"sqlite: seeded {args.jobs:,} jobs across {REPOS} repositories in "
                  f"{time.perf_counter() - started:.0f}s ({path.stat().st_size / 1e6:.0f} MB)")
            await measure("sqlite", f"sqlite:///{path}", args.jobs, args.repeat, Path(tmp))
        if args.store in ("postgres", "both"):
            database = f"solstice_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(args.pg)
            await admin.execute(f'CREATE DATABASE "{database}"')
            dsn = args.pg.rsplit("/", 1)[0] + "/" + database
            try:
                async with open_store(dsn):
                    pass
                started = time.perf_counter()
                await seed_postgres(dsn, args.jobs, now)
                print(f"postgres: seeded {args.jobs:,} jobs across {REPOS} repositories in "
                      f"{time.perf_counter() - started:.0f}s")
                await measure("postgres", dsn, args.jobs, args.repeat, Path(tmp))
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
