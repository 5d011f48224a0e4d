"""Three ``solstice-orchestrator serve`` processes, one RabbitMQ, one PostgreSQL; one node SIGKILLed mid-run.

The nodes run the ``instant`` driver, whose VMs are records on disk, so
the killed node leaves real orphans behind. The test publishes 200 jobs over
two labels, SIGKILLs a node while it holds running jobs, and checks the books
once every job finished:

* the store: every job is terminal, in the state its steps call for, with
  exactly one attempt in a terminal state other than the ``errored`` the
  lapsed-host sweep gives a dead host's attempt;
* the event bus: every job announced terminal exactly once (counted by
  ``event_id``: the outbox delivers at least once), and the announced end is
  the one the store holds - also for jobs the killed node finished, whose
  events wait in the store's outbox until a live node takes them over;
* the killed node's unfinished jobs ran again, as attempt 2, on another host;
* restarting the killed node reconciles its orphan VMs (its driver journal's records) away.

A node writes a final state and its event in one store transaction (the
durable event outbox, docs/orchestrator.md "Multi-host guarantees"), so the
kill cannot lose a terminal event.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.queue import RabbitJobPublisher, Topology
from common.rpc import jobs_pb2
from orchestrator.names import vm_name
from orchestrator.node.testing import recorded_vms
from orchestrator.store import JobRecord, JobState, Store, open_store
from orchestrator.store.records import AttemptRecord, JobFilter
from tests.node.harness import event_log, job, prefix
from tests.queue.broker import with_reconnect_interval
from tests.waiting import async_wait_until

EXE = Path(sys.executable).parent / "solstice-orchestrator"
LABELS = ("lab-a", "lab-b")
HOSTS = ("mh-1", "mh-2", "mh-3")
VICTIM = "mh-2"
JOBS = 200
CAPACITY = 4
FAILING = 20  # jobs whose step exits 3: the run ends in more than one terminal state
STEP = "sleep 0.3"  # long enough that a node always holds running jobs mid-run


def node_yaml(pg: str, amqp: str, pfx: str, root: Path, host: str) -> str:
    """The node's YAML: short timers so a dead host is noticed within seconds."""
    return f"""\
store_url: "{pg}"
amqp_url: "{amqp}"
queue_prefix: "{pfx}"
data_dir: "{root / host}"
node:
  host: {host}
  labels: [{", ".join(LABELS)}]
  capacity: {CAPACITY}
  label_limits: {{{LABELS[1]}: 3}}
grpc:
  listen: 127.0.0.1:0
drivers:
  driver: instant
  local:
    state_dir: "{root / host / 'vms'}"
timers:
  heartbeat: 0.5s
  stale_after: 4s
  sweep: 0.5s
  reconcile: 2s
  cancel_poll: 0.2s
timeouts:
  prepare: 10s
  boot: 10s
  runner: 20s
  job: 60s
  teardown: 20s
"""


class NodeProcess:
    """One ``solstice-orchestrator serve`` process; its output goes to files under ``root``."""

    def __init__(self, config: Path, root: Path, host: str) -> None:
        self.config = config
        self.root = root
        self.host = host
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout = self.stderr = root / "unused"

    def start(self) -> None:
        self.runs += 1
        self.stdout = self.root / f"{self.host}.{self.runs}.out"
        self.stderr = self.root / f"{self.host}.{self.runs}.err"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [str(EXE), "serve", "--config", str(self.config), "--log-format", "json"],
                stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def serving(self) -> bool:
        """True once the node printed its serving line (after start-up reconciliation)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.host} exited with {self.process.returncode}:\n{self.tail()}")
        return b"serving on" in self.stdout.read_bytes()

    def tail(self, lines: int = 30) -> str:
        text = self.stderr.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    async def terminate(self) -> int:
        """SIGTERM and wait (a graceful shutdown exits 0)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 60)

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def vm_records(self) -> set[str]:
        return recorded_vms(self.root / self.host / "vms")


@dataclass
class ServeCluster:
    """The node processes (not started yet) and the queue prefix they share."""

    prefix: str
    nodes: dict[str, NodeProcess]


@pytest.fixture
async def serve_cluster(tmp_path: Path, pg_database: str, amqp_vhost_url: str) -> AsyncIterator[ServeCluster]:
    assert EXE.exists(), f"{EXE} is missing: run scripts/bootstrap.sh test"
    made = ServeCluster(prefix(), {})
    amqp = with_reconnect_interval(amqp_vhost_url, 0.5)
    for host in HOSTS:
        config = tmp_path / f"{host}.yaml"
        config.write_text(node_yaml(pg_database, amqp, made.prefix, tmp_path, host))
        made.nodes[host] = NodeProcess(config, tmp_path, host)
    try:
        yield made
    finally:
        for node in made.nodes.values():
            node.ensure_dead()


def requests() -> list[jobs_pb2.JobRequest]:
    made = []
    for i in range(JOBS):
        steps = ("exit 3",) if i % (JOBS // FAILING) == 0 else (STEP,)
        made.append(job(f"job-{i:03d}", label=LABELS[i % 2], steps=steps, run_id="mh-run"))
    return made


async def all_jobs(store: Store, run_id: str) -> list[JobRecord]:
    return await store.jobs_of_run(run_id)


async def held_by(store: Store, host: str) -> list[JobRecord]:
    jobs = []
    for state in (JobState.PROVISIONING, JobState.RUNNING):
        jobs += await store.list_jobs(JobFilter(host=host, state=state, limit=1000))
    return jobs


def taken_back(attempt: AttemptRecord) -> bool:
    """An attempt the store ended because its host died (``requeue_lapsed``/``requeue_host``)."""
    return attempt.state is JobState.ERRORED and "; requeued as attempt" in attempt.reason


@pytest.mark.slow
async def test_three_nodes_survive_losing_one(serve_cluster: ServeCluster, pg_database: str,
                                              amqp_vhost_url: str) -> None:
    pfx, nodes = serve_cluster.prefix, serve_cluster.nodes
    topology = Topology(pfx)
    wanted = requests()
    expected = {r.job_id: (JobState.FAILED if r.steps[0].run.startswith("exit") else JobState.SUCCEEDED)
                for r in wanted}
    run_id = wanted[0].run_id

    async with open_store(pg_database) as store, event_log(amqp_vhost_url, pfx) as events:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            await async_wait_until(node.serving, timeout=60, what=f"{node.host} serving")

        async with RabbitJobPublisher(amqp_vhost_url, topology) as publisher:
            await publisher.publish(wanted)

        # Mid-run: part of the work done, and the victim holds running jobs.
        async def finished() -> int:
            return sum(j.terminal for j in await all_jobs(store, run_id))

        await async_wait_until(lambda: _at_least(finished, JOBS // 5), timeout=60, what="a fifth of the jobs done")
        victim = nodes[VICTIM]

        async def victim_running() -> list[JobRecord]:
            running = [j for j in await held_by(store, VICTIM) if j.state is JobState.RUNNING]
            return running if len(running) >= 2 else []

        await async_wait_until(victim_running, timeout=30, what=f"{VICTIM} running jobs")
        victim.kill()
        # The process is gone: what it held now stays held until a sweep takes it.
        held_at_kill = {j.job_id: j for j in await held_by(store, VICTIM)}
        running_vms = {vm_name(j.job_id, j.attempt) for j in held_at_kill.values() if j.state is JobState.RUNNING}
        assert held_at_kill and running_vms, "the victim held no running job when killed"
        assert JOBS - await finished() > len(held_at_kill), "the kill came too late to be mid-run"

        async def everything_done() -> bool:
            return await finished() == JOBS

        await async_wait_until(everything_done, timeout=90, what=f"all {JOBS} jobs terminal")

        # -- the store: each job ended once, as its steps say ---------------------------
        jobs = {j.job_id: j for j in await all_jobs(store, run_id)}
        assert set(jobs) == set(expected), "jobs lost or invented"
        assert {k: j.state for k, j in jobs.items()} == expected
        attempts = {k: await store.attempts(k) for k in jobs}
        for job_id, history in attempts.items():
            # Exactly one attempt ended on its own; any other one was taken back from a dead host.
            ended = [a for a in history if not taken_back(a)]
            assert len(ended) == 1 and ended[0] is history[-1], (job_id, history)
            assert history[-1].attempt == jobs[job_id].attempt and history[-1].state is expected[job_id]

        # -- the killed node's jobs ran again elsewhere ----------------------------------
        rerun = {k for k, h in attempts.items() if any(taken_back(a) for a in h)}
        assert all(a.host == VICTIM for k in rerun for a in attempts[k] if taken_back(a))
        assert set(held_at_kill) <= rerun
        for job_id in held_at_kill:
            history = attempts[job_id]
            assert [a.attempt for a in history] == [1, 2], (job_id, history)
            assert history[0].host == VICTIM and history[0].state is JobState.ERRORED, history
            assert history[1].host not in ("", VICTIM), history
            assert history[1].state is expected[job_id], history
        hosts_used = {h[-1].host for h in attempts.values()}
        assert hosts_used >= {HOSTS[0], HOSTS[2]}, hosts_used

        # -- the event bus: every job's end announced, once per event_id ---------------------
        def ends(job_id: str) -> dict[str, jobs_pb2.JobEvent]:
            return {e.event_id: e for e in events.terminal(job_id)}  # a redelivered copy counts once

        async def events_settled() -> bool:
            return all(ends(k) for k in jobs)

        # The victim's unsent events go out once a sweep sees its heartbeat lapsed.
        await async_wait_until(events_settled, timeout=60, what="a terminal event of every job")
        for job_id, record in jobs.items():
            announced = list(ends(job_id).values())
            assert len(announced) == 1, f"{job_id} announced terminal {len(announced)} times"
            assert (JobState(announced[0].state), announced[0].attempt) == (record.state, record.attempt), job_id
        by_victim = [k for k in jobs if attempts[k][-1].host == VICTIM]
        print(f"\njobs the killed node finished (all announced): {len(by_victim)}; "
              f"jobs re-run after the kill: {len(rerun)}; held at kill: {len(held_at_kill)}")

        # -- restart the killed node: its orphan VMs are reconciled away ------------------
        orphans = victim.vm_records()
        # Teardown comes before the final state: a job still `running` in the store may have
        # lost its VM already. Whatever is left belongs to an attempt the victim held.
        assert orphans, "the killed node left no VM behind to reconcile"
        assert orphans <= {vm_name(j.job_id, j.attempt) for j in held_at_kill.values()}, orphans
        victim.start()
        await async_wait_until(victim.serving, timeout=60, what=f"{VICTIM} serving again")
        # Start-up reconciliation runs before the node reports serving.
        assert victim.vm_records() == set()
        stats = collections.Counter(a.host for h in attempts.values() for a in h)
        print(f"attempts per host: {dict(stats)}")

        for node in nodes.values():
            assert await node.terminate() == 0, f"{node.host} did not shut down cleanly:\n{node.tail()}"


async def _at_least(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await count() >= n
