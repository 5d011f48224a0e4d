"""Live-log throughput: a job printing 100,000 lines/s, followed over server-sent events and in a browser.

Run: .venv/bin/python bench/bench_live_log.py [--lines 300000] [--rate 100000] [--no-browser]

A running job's log is appended to at ``--rate`` lines/s (batches of 1,000
lines, as the runner ships them, through the log store's real ``append``)
while the dashboard serves it over loopback HTTP. Two followers:

1. an SSE client reading ``/jobs/<id>/live``: lines/s received, and how far
   behind it is when the writer stops (the ratio to the rate: 1.0 = keeps up);
2. headless Chromium (Debian's chromium + chromedriver, as the tests use) on the
   job page: lines/s the page applied, the longest gap between two animation
   frames while it did (a frozen page shows as a long gap), and the lines left
   in the page (capped, with a "show earlier" link).

Figures only: the test suite never runs this file and nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.logbatch import STDOUT  # noqa: E402
from common.rpc import jobs_pb2, runner_pb2  # noqa: E402
from dashboard.app import Backing, Dashboard  # noqa: E402
from dashboard.logsource import LocalLogs  # noqa: E402
from orchestrator.logstore import JobLog, LogStore  # noqa: E402
from orchestrator.store import JobState, open_store  # noqa: E402

BATCH = 1000
JOB = "job-live-bench"


async def writer(joblog: JobLog, lines: int, rate: float, done: asyncio.Event) -> float:
    """Append ``lines`` at ``rate`` lines/s; returns the seconds it took."""
    started = time.perf_counter()
    written = 0
    while written < lines:
        n = min(BATCH, lines - written)
        batch = runner_pb2.LogBatch(first_sequence=written + 1)
        data = b"\n".join(b"\x1b[36m[%07d]\x1b[0m compiling module %d <ok> & fine" % (written + i, i) for i in range(n))
        batch.runs.add(step=0, stream=STDOUT, at=time.time(), lines=n, data=data)
        await joblog.append(batch)
        written += n
        ahead = written / rate - (time.perf_counter() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    took = time.perf_counter() - started
    await joblog.close()
    done.set()
    return took


async def sse_follower(base: str, lines: int, written: asyncio.Event) -> tuple[float, int]:
    """(seconds to receive every line, lines still missing when the writer finished)."""
    received, behind = 0, -1
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    buffer = b""
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{base}/jobs/{JOB}/live") as answer:
        async for chunk in answer.content.iter_any():
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"event: lines"):
                    received += event.count(b'<li id=\\"L')  # inside the JSON string: quotes escaped
            if written.is_set() and behind < 0:
                behind = lines - received
            if received >= lines:
                break
    return time.perf_counter() - started, max(behind, 0)


def browser_follower(url: str, lines: int, ready: threading.Event) -> str:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            driver.execute_script("""
                window.__gap = 0; let last = performance.now();
                (function frame(now) { window.__gap = Math.max(window.__gap, now - last); last = now;
                                       requestAnimationFrame(frame); })(last);""")
            ready.set()
            started = time.perf_counter()
            shown = "return Number(document.getElementById('log').dataset.shown || 0)"
            while int(driver.execute_script(shown)) < lines:
                time.sleep(0.05)
                if time.perf_counter() - started > 600:
                    return "browser: gave up after 600s"
            took = time.perf_counter() - started
            time.sleep(0.3)  # the last frame applies the last batch
            kept = driver.execute_script("return document.querySelectorAll('#log ol.log > li').length")
            gap = driver.execute_script("return window.__gap")
            earlier = bool(driver.execute_script("return document.getElementById('log-earlier') !== null"))
            return (f"browser: {lines / took:9.0f} lines/s applied; longest frame gap {gap:.0f} ms; "
                    f"{kept} lines kept in the page (show-earlier link: {'yes' if earlier else 'no'})")
        finally:
            driver.quit()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=100_000)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        async with open_store(f"sqlite:///{tmp}/state.sqlite") as store, LogStore(Path(tmp) / "logs") as logs:
            await store.submit(jobs_pb2.JobRequest(job_id=JOB, run_id="r", key="build", name="build", runs_on="x",
                                                   checkout=jobs_pb2.Checkout(forge="local", repo="/src/app"),
                                                   steps=[jobs_pb2.Step(name="Compile", run="make")]))
            assert await store.claim(JOB, 1, "bench", "vm-bench")
            assert await store.transition(JOB, 1, JobState.RUNNING)
            dashboard = Dashboard()
            dashboard.attach(Backing(store, LocalLogs(logs)))
            app = web.Application()
            dashboard.add_routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                # 1. an SSE client
                joblog = await logs.open(JOB, 1)
                written = asyncio.Event()
                follow = asyncio.create_task(sse_follower(base, args.lines, written))
                wrote = await writer(joblog, args.lines, args.rate, written)
                took, behind = await follow
                print(f"writer:  {args.lines:,} lines in {wrote:5.2f}s ({args.lines / wrote:9.0f} lines/s)")
                print(f"sse:     {args.lines / took:9.0f} lines/s received; {behind:,} lines behind when the writer "
                      f"finished; ratio to what was written {min(1.0, wrote / took):4.2f} (1.00 = keeps up)")
                # 2. a browser, on a fresh attempt of the same job
                if args.no_browser:
                    return
                if not shutil.which("chromium") or not shutil.which("chromedriver"):
                    print("browser: skipped (no chromium/chromedriver: bash scripts/ensure-browser.sh)")
                    return
                assert await store.transition(JOB, 1, JobState.SUCCEEDED)
                job = await store.retry(JOB)
                assert await store.claim(JOB, job.attempt, "bench", "vm-bench-2")
                assert await store.transition(JOB, job.attempt, JobState.RUNNING)
                await (await logs.open(JOB, job.attempt)).append(runner_pb2.LogBatch(first_sequence=1))
                ready = threading.Event()
                looking = asyncio.create_task(asyncio.to_thread(browser_follower, f"{base}/jobs/{JOB}", args.lines,
                                                                ready))
                while not ready.is_set():
                    await asyncio.sleep(0.05)
                await writer(await logs.open(JOB, job.attempt), args.lines, args.rate, asyncio.Event())
                print(await looking)
            finally:
                dashboard.closing.set()
                await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
