"""Log throughput, from the runner to the store and from the store to people.

Run: .venv/bin/python bench/bench_logs.py [--lines 1000000] [--runs 3] [--big-mb 200] [--skip PART ...]

Parts (each printed as figures and a ratio):

``store``   A real runner subprocess runs ``seq 1 N`` against an in-process
            orchestrator (gRPC on loopback, log store in a temporary
            directory). The clock starts at the step's start and stops when
            the orchestrator has fdatasync'ed the line holding N. Compared to
            ``seq 1 N > file``. Target: all lines durable within 3 s.
``readers`` One ``solstice serve`` runs a job printing ``seq 1 N``; then each
            reader prints its whole log to /dev/null: ``ciadm logs``,
            ``ciadm logs --follow`` (of the finished job, and started before
            the job printed a line), ``curl`` of the raw log. Each is compared
            to ``cat`` of the same bytes to /dev/null (ratio and difference).
            ``cidev run`` of the job is compared to ``cidev run`` of the same
            job with its output sent to /dev/null. Targets: ciadm within 1 s
            of cat, curl within 0.5 s, cidev run within 1 s.
``nodes``   Two in-process nodes on PostgreSQL and RabbitMQ (the test
            services); one runs the job (instant driver), then its log is read
            whole through the AdminService of each: the one that ran it reads
            its files, the other the archive. Target: within 1.5x.
``big``     A job printing about ``--big-mb`` MB; its raw log is fetched over
            HTTP while ``/healthz`` is asked every 50 ms and the server's RSS
            is sampled. Targets: RSS grows by under 50 MB, /healthz under 100 ms.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.logbatch import STDOUT, SYSTEM  # noqa: E402
from common.rpc import jobs_pb2  # noqa: E402
from tests.protocol.harness import assigned, orchestrator  # noqa: E402
from tests.runner.helpers import make_repo, runner_exit, start_runner  # noqa: E402

BIN = Path(sys.executable).parent


# -- store: runner -> durable ------------------------------------------------------------

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


def bench_store(opts: argparse.Namespace) -> None:
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


# -- readers: store -> a person ------------------------------------------------------------

def _timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return took


def _best(runs: int, measure) -> float:  # type: ignore[no-untyped-def]
    return min(measure() for _ in range(runs))


def _report(name: str, took: float, base: float, target: float, size: int) -> None:
    met = "met" if took - base <= target else "NOT met"
    print(f"  {name:<34} {took:7.3f} s  {size / took / 1e6:7.1f} MB/s  {took / base:6.1f}x cat  "
          f"+{took - base:.3f} s (target +{target:g} s: {met})")


def bench_readers(opts: argparse.Namespace) -> None:
    from tests.singlenode.harness import ServeProcess, git_repo

    lines = opts.lines
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmp_text:
        tmp = Path(tmp_text)
        gate = tmp / "gate"
        repo = git_repo(tmp / "repo", f"""\
workflow name="bench" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="while [ ! -e {gate} ]; do sleep 0.01; done; seq 1 {lines}"
  }}
}}
""")
        quiet = git_repo(tmp / "quiet", f"""\
workflow name="bench" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="seq 1 {lines} > /dev/null"
  }}
}}
""")
        plain = git_repo(tmp / "plain", f"""\
workflow name="bench" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="seq 1 {lines}"
  }}
}}
""")
        with ServeProcess(tmp / "data") as node:
            env = {**os.environ, "SOLSTICE_ORCHESTRATOR": node.admin}
            job_id = node.ciadm_json("submit", cwd=repo)[0]["job_id"]
            ciadm = str(BIN / "ciadm")
            follower = subprocess.Popen([ciadm, "logs", "--follow", job_id], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env)
            time.sleep(1.0)  # the follower is connected and waiting for the first line
            started = time.perf_counter()
            gate.touch()
            follower.wait(300)
            live = time.perf_counter() - started
            node.wait_state(job_id, "succeeded", timeout=300)
            text = tmp / "log.txt"
            with text.open("wb") as out:
                subprocess.run([ciadm, "logs", job_id], stdout=out, env=env, check=True)
            size = text.stat().st_size
            cat = _best(opts.runs, lambda: _timed(["cat", str(text)]))
            print(f"\n{lines:,}-line job, its log {size / 1e6:.1f} MB; each reader to /dev/null, best of {opts.runs}")
            print(f"  {'cat of the same bytes':<34} {cat:7.3f} s")
            _report("ciadm logs", _best(opts.runs, lambda: _timed([ciadm, "logs", job_id], env)), cat, 1.0, size)
            _report("ciadm logs --follow (finished job)",
                    _best(opts.runs, lambda: _timed([ciadm, "logs", "--follow", job_id], env)), cat, 1.0, size)
            url = f"{node.url}/jobs/{job_id}/log"
            _report("curl of the raw log", _best(opts.runs, lambda: _timed(["curl", "-sf", url])), cat, 0.5, size)
            print(f"  ciadm logs --follow from before the job printed: {live:.3f} s from the gate to its end "
                  f"(the job's own run included)")
        cidev = [str(BIN / "cidev"), "run"]
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        to_null = _best(opts.runs, lambda: _timed(cidev, env, quiet))
        printed = _best(opts.runs, lambda: _timed(cidev, env, plain))
        met = "met" if printed - to_null <= 1.0 else "NOT met"
        print(f"  cidev run printing it: {printed:.3f} s; the same job into /dev/null: {to_null:.3f} s; "
              f"+{printed - to_null:.3f} s ({printed / to_null:.2f}x; target +1 s: {met})")


# -- nodes: the archive against the node's own files ------------------------------------------

async def _nodes(opts: argparse.Namespace, tmp: Path, pg: str, amqp: str) -> None:
    from common.rpc import admin_pb2
    from tests.node.harness import admin_stub, job, node_settings, prefix, running_node

    pfx = prefix()
    a = node_settings(pg, amqp, tmp, pfx, host="node-a", labels=("lab-a",))
    b = node_settings(pg, amqp, tmp, pfx, host="node-b", labels=("lab-b",))
    async with running_node(a) as node_a, running_node(b) as node_b:
        async with admin_stub(node_a) as admin:
            await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("bench", steps=(f"seq 1 {opts.lines}",))]))
            while (await admin.Get(admin_pb2.GetJobRequest(job_id="bench"))).state != jobs_pb2.JOB_STATE_SUCCEEDED:
                await asyncio.sleep(0.1)
        store = node_a.parts.store
        while True:
            rows = await store.backend.run(  # type: ignore[attr-defined]
                "SELECT complete FROM log_archives WHERE job_id = 'bench'")
            if rows and rows[0]["complete"]:
                break
            await asyncio.sleep(0.1)

        async def read(node) -> float:  # type: ignore[no-untyped-def]
            async with admin_stub(node) as stub:
                started = time.perf_counter()
                count = 0
                async for page in stub.TailLogs(admin_pb2.TailLogsRequest(job_id="bench")):
                    count += sum(run.lines for run in page.runs)
                took = time.perf_counter() - started
            assert count == opts.lines, count
            return took

        own = min([await read(node_a) for _ in range(opts.runs)])
        other = min([await read(node_b) for _ in range(opts.runs)])
    ratio = other / own
    print(f"\n{opts.lines:,} lines read whole through AdminService, best of {opts.runs}")
    print(f"  the node that ran the job (its files): {own:.3f} s")
    print(f"  another node (the PostgreSQL archive): {other:.3f} s  {ratio:.2f}x "
          f"(target 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")


def bench_nodes(opts: argparse.Namespace) -> None:
    from tests import services

    database = services.create_database()
    vhost = services.create_vhost()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
            asyncio.run(_nodes(opts, Path(tmp), services.pg_dsn(database), services.amqp_url(vhost)))
    finally:
        services.drop_database(database)
        services.delete_vhost(vhost)


# -- big: a 200 MB log over HTTP -------------------------------------------------------------

def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_big(opts: argparse.Namespace) -> None:
    from tests.singlenode.harness import ServeProcess, git_repo

    lines = int(opts.big_mb * 1e6 / 8.9)  # seq prints about 8.9 bytes a line up to 10^8
    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp_text:
        tmp = Path(tmp_text)
        repo = git_repo(tmp / "repo", f"""\
workflow name="big" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="seq 1 {lines}"
  }}
}}
""")
        with ServeProcess(tmp / "data") as node:
            job_id = node.ciadm_json("submit", cwd=repo)[0]["job_id"]
            node.wait_state(job_id, "succeeded", "failed", timeout=900)
            assert node.proc is not None
            pid = node.proc.pid
            before = _rss(pid)
            peak = before
            health: list[float] = []
            done = threading.Event()

            def probe() -> None:
                nonlocal peak
                while not done.is_set():
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"{node.url}/healthz", timeout=10) as answer:
                        answer.read()
                    health.append(time.perf_counter() - started)
                    peak = max(peak, _rss(pid))
                    time.sleep(0.05)

            prober = threading.Thread(target=probe)
            prober.start()
            started = time.perf_counter()
            out = subprocess.run(["curl", "-sf", f"{node.url}/jobs/{job_id}/log"], stdout=subprocess.PIPE, check=True)
            took = time.perf_counter() - started
            done.set()
            prober.join()
        size = len(out.stdout)
        grew = (peak - before) / 1e6
        worst = max(health) * 1000
        print(f"\na {size / 1e6:.0f} MB raw log over HTTP: {took:.2f} s ({size / took / 1e6:.0f} MB/s)")
        print(f"  server RSS {before / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB: +{grew:.1f} MB "
              f"(target < 50 MB: {'met' if grew < 50 else 'NOT met'})")
        print(f"  /healthz meanwhile: {len(health)} answers, median {statistics.median(health) * 1000:.1f} ms, "
              f"worst {worst:.1f} ms (target < 100 ms: {'met' if worst < 100 else 'NOT met'})")


PARTS = {"store": bench_store, "readers": bench_readers, "nodes": bench_nodes, "big": bench_big}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mb", type=float, default=200.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(PARTS))
    opts = parser.parse_args()
    for name, part in PARTS.items():
        if name not in opts.skip:
            part(opts)


if __name__ == "__main__":
    main()
