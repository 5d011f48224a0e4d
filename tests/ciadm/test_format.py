"""How ``ciadm`` shows attempts and hosts: a requeue says why, a dead host runs nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ciadm import format as fmt
from common.rpc import admin_pb2, jobs_pb2

LAPSED = "host node-b sent no heartbeat for over 30s during attempt 1; requeued as attempt 2"


def _at(hour: int, minute: int, second: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 11, 1, hour, minute, second, tzinfo=UTC))
    return stamp


def test_status_lists_every_attempt_with_its_host_times_and_end() -> None:
    job = admin_pb2.JobInfo(job_id="job-1", key="build", state=jobs_pb2.JOB_STATE_RUNNING, attempt=2, host="node-a")
    job.attempts.add(attempt=1, host="node-b", state=jobs_pb2.JOB_STATE_ERRORED, reason=LAPSED,
                     queued_at=_at(12, 0, 0), started_at=_at(12, 0, 1), finished_at=_at(12, 1, 5))
    job.attempts.add(attempt=2, host="node-a", state=jobs_pb2.JOB_STATE_RUNNING,
                     queued_at=_at(12, 1, 5), started_at=_at(12, 1, 6))
    lines = fmt.job_details(job)
    first = lines.index(next(line for line in lines if line.startswith("ATTEMPT")))
    assert [line.split(None, 5) for line in lines[first + 1:]] == [
        ["1", "node-b", "2026-11-01T12:00:00+00:00", "2026-11-01T12:00:01+00:00", "2026-11-01T12:01:05+00:00",
         f"errored: {LAPSED}"],
        ["2", "node-a", "2026-11-01T12:01:05+00:00", "2026-11-01T12:01:06+00:00", "-", "running"],
    ]
    assert fmt.job_json(job)["attempts"][0] == {
        "attempt": 1, "host": "node-b", "state": "errored", "reason": LAPSED,
        "queued_at": "2026-11-01T12:00:00+00:00", "started_at": "2026-11-01T12:00:01+00:00",
        "finished_at": "2026-11-01T12:01:05+00:00",
    }


def test_a_dead_host_says_when_it_was_lost() -> None:
    hosts = [admin_pb2.HostInfo(name="node-a", capacity=4, running=2, heartbeat_age_seconds=1.5, alive=True),
             admin_pb2.HostInfo(name="node-b", capacity=4, running=0, heartbeat_age_seconds=95, alive=False)]
    header, live, dead = fmt.hosts_table(hosts)
    assert header.endswith("ALIVE") and live.endswith("  yes")
    assert dead.split()[:4] == ["node-b", "*", "4", "0"] and dead.endswith("  no, lost 1m35s ago")
