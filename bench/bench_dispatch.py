"""Dispatch through whole nodes: jobs/s from submit to terminal, and submit->running latency.

Run: .venv/bin/python bench/bench_dispatch.py [--modes instant grpc] [--nodes 1 3] [--jobs 600]
     [--capacity 16] [--paced 200 --rate 20] [--profile DIR]

For each mode and node count, that many ``solstice-orchestrator serve``
processes run an instant driver (no VM) against a scratch PostgreSQL
database and a scratch RabbitMQ vhost, both removed at the end. Modes:

* ``instant`` (driver ``instant-inprocess``): the fake runner calls the
  node's RunnerService servicer in-process - token check, sessions, step
  records, job log and outcome all run, but no gRPC: the client side and the
  transport are what a runner in a VM pays, not the node. This is the
  dispatch figure the issue-5 target (>= 200 jobs/s per node) is judged on.
* ``grpc`` (driver ``instant``): the fake runner speaks real RunnerService
  gRPC over loopback, inside the node process, so the node's CPU also holds
  the runner's client side of every call.

The benchmark publishes job requests the way the integration does and
follows the ``solstice.events`` exchange:

* flood: ``--jobs`` x nodes requests published at once; throughput is jobs
  divided by the time from the first publish to the last terminal event;
* paced: ``--paced`` requests published one at a time at ``--rate``/s, so
  jobs do not queue behind each other; the submit->running latency (publish
  call to the ``at`` stamp of the job's RUNNING event) is the dispatch cost.

Targets (issue 5): >= 200 jobs/s per node and p50 submit->running < 50 ms.
``--profile DIR`` runs each node under cProfile (DIR/<nodes>-<host>.prof;
the figures then include profiling overhead). Figures only: not part of the
test suite, nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

# The checkout's tests package (for its service helpers), not the stray
# top-level ``tests`` package kdl-py installs into site-packages.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.queue import Disposition, RabbitJobPublisher, Topology
from common.queue.codec import decode_job_event
from common.rpc import jobs_pb2
from orchestrator.store import JobState
from tests import services

EXE = Path(sys.executable).parent / "solstice-orchestrator"
TARGET_PER_NODE = 200.0  # jobs/s
TARGET_P50_MS = 50.0
LABEL = "bench"
DRIVERS = {"instant": "instant-inprocess", "grpc": "instant"}  # bench mode -> driver


def request(job_id: str) -> jobs_pb2.JobRequest:
    return jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=job_id, run_id="bench", key=job_id, name=job_id,
        runs_on=LABEL, checkout=jobs_pb2.Checkout(forge="local", repo="o/r", ref="refs/heads/main", sha="a" * 40),
        steps=[jobs_pb2.Step(name="build", run="true")],
    )


def node_yaml(pg: str, amqp: str, pfx: str, root: Path, host: str, capacity: int, driver: str) -> str:
    return f"""\
store_url: "{pg}"
amqp_url: "{amqp}"
queue_prefix: "{pfx}"
data_dir: "{root / host}"
node:
  host: {host}
  labels: [{LABEL}]
  capacity: {capacity}
grpc:
  listen: 127.0.0.1:0
drivers:
  driver: {driver}
  local:
    state_dir: "{root / host / 'vms'}"
"""


@dataclass
class Watch:
    """Follows job events: when each job started running and when it ended."""

    submitted: dict[str, float] = field(default_factory=dict)  # job -> wall clock at publish
    claimed: dict[str, float] = field(default_factory=dict)  # job -> the PROVISIONING event's stamp
    running: dict[str, float] = field(default_factory=dict)  # job -> the RUNNING event's stamp
    ended: dict[str, float] = field(default_factory=dict)  # job -> arrival of its terminal event
    finished: dict[str, float] = field(default_factory=dict)  # job -> its terminal event's stamp (node side)
    not_succeeded: int = 0
    want: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_event(self, event: jobs_pb2.JobEvent) -> Disposition:
        if event.HasField("step"):
            return Disposition.ACK
        state = JobState(event.state)
        if state is JobState.PROVISIONING:
            self.claimed.setdefault(event.job_id, event.at.ToNanoseconds() / 1e9)
        elif state is JobState.RUNNING:
            self.running.setdefault(event.job_id, event.at.ToNanoseconds() / 1e9)
        elif state.terminal and event.job_id not in self.ended:
            self.ended[event.job_id] = time.time()
            self.finished[event.job_id] = event.at.ToNanoseconds() / 1e9
            self.not_succeeded += state is not JobState.SUCCEEDED
            if len(self.ended) >= self.want:
                self.done.set()
        return Disposition.ACK

    def expect(self, n: int) -> None:
        self.want = len(self.ended) + n
        self.done = asyncio.Event()

    def latencies_ms(self, jobs: list[str]) -> list[float]:
        return sorted((self.running[j] - self.submitted[j]) * 1000 for j in jobs if j in self.running)


class EventObserver:
    """The benchmark's view of ``solstice.events``: a durable subscriber queue bound to every
    event, as the integration's reporter has, consumed with automatic acknowledgement.

    The reporter acknowledges each event; the observer does not, so that measuring costs
    this shared machine (the broker and this process) as little as possible.
    """

    def __init__(self, amqp: str, topology: Topology, watch: Watch) -> None:
        self.amqp, self.topology, self.watch = amqp, topology, watch
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.amqp)
        channel = await self.connection.channel()
        queue = await self.topology.declare_event_queue(channel, "bench", ("#",))
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await self.watch.on_event(decode_job_event(message.body))

    async def stop(self) -> None:
        if self.connection is not None:
            await self.connection.close()


class Cluster:
    """``count`` node processes on a fresh database and queue prefix."""

    def __init__(self, mode: str, count: int, amqp: str, root: Path, capacity: int, profile: Path | None,
                 log_level: str) -> None:
        self.mode, self.count, self.amqp, self.root = mode, count, amqp, root
        self.capacity, self.profile, self.log_level = capacity, profile, log_level
        self.prefix = f"bench{os.getpid()}{mode}n{count}."
        self.database = ""
        self.processes: list[subprocess.Popen[bytes]] = []

    async def start(self) -> None:
        self.database = await asyncio.to_thread(services.create_database)
        pg = services.pg_dsn(self.database)
        for n in range(self.count):
            self.processes.append(self._spawn(self._host(n), pg))
        deadline = time.monotonic() + 60
        for n, process in enumerate(self.processes):
            path = self.root / f"{self._host(n)}.out"
            while b"serving on" not in path.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / f"{self._host(n)}.err").read_text()[-2000:]
                    raise SystemExit(f"node {n} did not start:\n{tail}")
                await asyncio.sleep(0.1)  # poll interval of a deadline loop

    def _host(self, n: int) -> str:
        return f"bench-{self.mode}-{self.count}-{n}"

    def _spawn(self, host: str, pg: str) -> subprocess.Popen[bytes]:
        config = self.root / f"{host}.yaml"
        config.write_text(node_yaml(pg, self.amqp, self.prefix, self.root, host, self.capacity, DRIVERS[self.mode]))
        argv = [str(EXE), "serve", "--config", str(config), "--log-format", "json", "--log-level", self.log_level]
        if self.profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile / f"{self.count}-{host}.prof"), *argv]
        with (self.root / f"{host}.out").open("wb") as out, (self.root / f"{host}.err").open("wb") as err:
            return subprocess.Popen(argv, stdout=out, stderr=err)

    def cpu_seconds(self) -> float:
        """User + system CPU the node processes used so far (from /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def resources(self) -> tuple[int, int]:
        """Threads and open file descriptors of the busiest node (leaks grow with jobs run)."""
        most = (0, 0)
        for process in self.processes:
            status = Path(f"/proc/{process.pid}/status").read_text()
            threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
            fds = len(os.listdir(f"/proc/{process.pid}/fd"))
            most = max(most, (threads, fds))
        return most

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.database:
            await asyncio.to_thread(services.drop_database, self.database)


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # idle + iowait


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total if total else 0.0


async def flood(publisher: RabbitJobPublisher, watch: Watch, tag: str, n: int) -> float:
    """Seconds from the first publish to the last terminal event of ``n`` jobs published at once."""
    jobs = [request(f"{tag}-{i}") for i in range(n)]
    watch.expect(n)
    started = time.time()
    for job in jobs:
        watch.submitted[job.job_id] = started
    for i in range(0, n, 100):
        await publisher.publish(jobs[i:i + 100])
    await asyncio.wait_for(watch.done.wait(), timeout=600)
    return max(watch.ended[j.job_id] for j in jobs) - started


async def paced(publisher: RabbitJobPublisher, watch: Watch, tag: str, n: int, rate: float) -> list[str]:
    """Publish ``n`` jobs one by one, ``rate`` per second; returns their ids once all ended."""
    ids = [f"{tag}-{i}" for i in range(n)]
    if not ids:
        return ids
    watch.expect(n)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, job_id in enumerate(ids):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))  # the pacing itself, not a wait for a result
        watch.submitted[job_id] = time.time()
        await publisher.publish([request(job_id)])
    await asyncio.wait_for(watch.done.wait(), timeout=600)
    return ids


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


async def scenario(mode: str, count: int, args: argparse.Namespace, amqp: str, root: Path) -> dict[str, float]:
    cluster = Cluster(mode, count, amqp, root, args.capacity, args.profile, args.log_level)
    watch = Watch()
    topology = Topology(cluster.prefix)
    observer = EventObserver(amqp, topology, watch)
    await observer.start()
    try:
        await cluster.start()
        async with RabbitJobPublisher(amqp, topology) as publisher:
            await flood(publisher, watch, "warm", 20 * count)  # connections, pools, caches
            jobs = args.jobs * count
            cpu, machine = cluster.cpu_seconds(), machine_ticks()
            flood_start = time.time()
            seconds = await flood(publisher, watch, "flood", jobs)
            cpu_ms = (cluster.cpu_seconds() - cpu) / jobs * 1000
            busy = busy_share(machine, machine_ticks())
            threads, fds = cluster.resources()
            flood_ids = [f"flood-{i}" for i in range(jobs)]
            flood_lat = watch.latencies_ms(flood_ids)
            node_seconds = max(watch.finished[j] for j in flood_ids) - flood_start
            lag = sorted((watch.ended[j] - watch.finished[j]) * 1000 for j in flood_ids)
            booting = sorted((watch.running[j] - watch.claimed[j]) * 1000 for j in flood_ids)
            working = sorted((watch.finished[j] - watch.running[j]) * 1000 for j in flood_ids)
            ids = await paced(publisher, watch, "paced", args.paced, args.rate)
            lat = watch.latencies_ms(ids)
    finally:
        await observer.stop()
        await cluster.stop()
    rate = jobs / seconds
    tag = f"{mode:>7} {count} node(s)"
    print(f"{tag}: flood {jobs} jobs in {seconds:6.2f}s = {rate:7.1f} jobs/s "
          f"({rate / count:6.1f}/node, {rate / count / TARGET_PER_NODE:4.2f}x the {TARGET_PER_NODE:g}/node target); "
          f"flood submit->running p50 {percentile(flood_lat, 50):7.1f} ms")
    print(f"{tag}: the node(s) stamped the last job finished after {node_seconds:6.2f}s = "
          f"{jobs / node_seconds:7.1f} jobs/s (before its terminal event reached the benchmark)")
    cores = os.cpu_count() or 1
    stack_ms = busy * cores * seconds / jobs * 1000
    print(f"{tag}: during the flood the machine was {busy:4.0%} busy: {stack_ms:5.2f} ms of CPU per job for the "
          f"whole stack (nodes, PostgreSQL, RabbitMQ, this benchmark), so its {cores} cores cap any number of "
          f"nodes near {cores * 1000 / stack_ms:6.1f} jobs/s")
    print(f"{tag}: node CPU {cpu_ms:5.2f} ms per job = at most {1000 / cpu_ms:6.1f} jobs/s per busy core "
          f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
          f"after {jobs + 20 * count} jobs a node holds {threads} threads, {fds} fds")
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    if ids:
        print(f"{tag}: paced {len(ids)} jobs at {args.rate:g}/s: submit->running p50 {p50:6.1f} ms, "
              f"p99 {p99:6.1f} ms ({p50 / TARGET_P50_MS:4.2f}x the {TARGET_P50_MS:g} ms p50 target, lower is better)")
    print(f"{tag}: flood terminal events arrive p50 {percentile(lag, 50):7.1f} ms, max {lag[-1]:7.1f} ms after the "
          f"node stamped them (time the event spends in the node's outbox and the broker)")
    print(f"{tag}: flood slot held per job p50: claim->running {percentile(booting, 50):6.1f} ms, "
          f"running->finished {percentile(working, 50):6.1f} ms (node-side stamps)")
    if watch.not_succeeded:
        print(f"  WARNING: {watch.not_succeeded} job(s) did not succeed")
    return {"rate": rate, "p50": p50, "p99": p99, "cpu_ms": cpu_ms}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=sorted(DRIVERS), default=["instant", "grpc"],
                        help="instant: in-process fake runner (the dispatch target); grpc: loopback gRPC runner")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--jobs", type=int, default=600, help="flood jobs per node")
    parser.add_argument("--capacity", type=int, default=16, help="concurrent VMs per node")
    parser.add_argument("--paced", type=int, default=200, help="jobs of the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs/s of the latency run")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile file per node here")
    args = parser.parse_args()
    if not EXE.exists():
        raise SystemExit(f"{EXE} is missing: run scripts/bootstrap.sh test")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    vhost = services.create_vhost()
    root = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for mode in args.modes:
            for n in args.nodes:
                results[mode, n] = await scenario(mode, n, args, services.amqp_url(vhost), root)
    finally:
        services.delete_vhost(vhost)
        shutil.rmtree(root, ignore_errors=True)
    for (mode, n), figures in results.items():
        if n != 1 and (mode, 1) in results:
            print(f"scaling ({mode}): {n} nodes give {figures['rate'] / results[mode, 1]['rate']:4.2f}x the jobs/s "
                  f"of 1 node (ideal {n}x; all nodes share this machine's {os.cpu_count()} cores)")
    if ("instant", 1) in results and ("grpc", 1) in results:
        instant, grpc = results["instant", 1], results["grpc", 1]
        print(f"1 node: the loopback gRPC runner costs the node {grpc['cpu_ms'] - instant['cpu_ms']:5.2f} ms CPU "
              f"per job on top of the in-process one ({grpc['cpu_ms']:5.2f} vs {instant['cpu_ms']:5.2f}); "
              f"the {TARGET_PER_NODE:g} jobs/s per node target is judged on mode 'instant'")


if __name__ == "__main__":
    asyncio.run(main())
