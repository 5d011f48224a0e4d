"""How ``ciadm`` shows AdminService answers: aligned tables for people, JSON for scripts.

JSON uses plain names (``"state": "running"``, times as ISO 8601 UTC, step
durations in seconds) so scripts need not know the protobuf enums.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from common.logbatch import iter_lines
from common.rpc import admin_pb2, jobs_pb2
from common.tables import iso_time as _time
from common.tables import table

STATES = ("queued", "provisioning", "running", "succeeded", "failed", "cancelled", "errored")


def state_name(value: int) -> str:
    return jobs_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()


def state_value(name: str) -> jobs_pb2.JobState:
    return cast(jobs_pb2.JobState, jobs_pb2.JobState.Value(f"JOB_STATE_{name.upper()}"))  # the stubs: Value() -> int


def source_name(value: int) -> str:
    """``forge`` (a verified webhook's job), ``admin`` (submitted through AdminService) or ``unspecified``."""
    return jobs_pb2.JobSource.Name(value).removeprefix("JOB_SOURCE_").lower()


def source_text(job: admin_pb2.JobInfo) -> str:
    """The source line of ``ciadm status``: ``admin (submitted by alice; not reported to a forge)``."""
    if job.source == jobs_pb2.JOB_SOURCE_ADMIN:
        return f"admin (submitted by {job.submitted_by or '?'}; not reported to a forge)"
    if job.source == jobs_pb2.JOB_SOURCE_FORGE:
        return "forge (from a verified webhook)"
    return "-"


def step_state_name(value: int) -> str:
    return jobs_pb2.StepState.Name(value).removeprefix("STEP_STATE_").lower()


def stream_name(value: int) -> str:
    return admin_pb2.LogStream.Name(value).removeprefix("LOG_STREAM_").lower()


def _age(ts: Timestamp, now: datetime | None = None) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    delta = ((now or datetime.now(UTC)) - ts.ToDatetime(tzinfo=UTC)).total_seconds()
    return duration(max(0.0, delta)) + " ago"


def duration(value: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h10m``."""
    if value < 10:
        return f"{value:.1f}s"
    if value < 60:
        return f"{int(value)}s"
    if value < 3600:
        minutes, rest = divmod(int(value), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(int(value), 3600)
    return f"{hours}h{rest // 60:02d}m"


def job_json(job: admin_pb2.JobInfo) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "run_id": job.run_id, "key": job.key, "name": job.name, "runs_on": job.runs_on,
        "state": state_name(job.state), "attempt": job.attempt, "host": job.host, "driver": job.driver,
        "reason": job.reason, "needs": list(job.needs),
        "source": source_name(job.source), "submitted_by": job.submitted_by,
        "checkout": {"forge": job.checkout.forge, "repo": job.checkout.repo, "ref": job.checkout.ref,
                     "sha": job.checkout.sha},
        "created_at": _time(job.created_at), "updated_at": _time(job.updated_at),
        "started_at": _time(job.started_at), "finished_at": _time(job.finished_at),
        "steps": [
            {"index": s.index, "name": s.name, "state": step_state_name(s.state), "exit_code": s.exit_code,
             "duration_seconds": s.duration_seconds}
            for s in job.steps
        ],
        "attempts": [
            {"attempt": a.attempt, "host": a.host, "state": state_name(a.state), "reason": a.reason,
             "queued_at": _time(a.queued_at), "started_at": _time(a.started_at), "finished_at": _time(a.finished_at)}
            for a in job.attempts
        ],
    }


def host_json(host: admin_pb2.HostInfo) -> dict[str, Any]:
    return {
        "name": host.name, "labels": list(host.labels), "capacity": host.capacity, "running": host.running,
        "heartbeat_age_seconds": round(host.heartbeat_age_seconds, 3), "draining": host.draining,
        "alive": host.alive,
    }


def page_json_lines(page: admin_pb2.LogPage) -> bytes:
    """One JSON object per line of ``page`` (``ciadm logs --json``), each ending in a newline;
    a log that ended early adds ``{"ended": "<why>"}``."""
    out = []
    for line in iter_lines(page):
        at = datetime.fromtimestamp(line.at, UTC).isoformat(timespec="seconds") if line.at else None
        out.append(json.dumps({
            "sequence": line.sequence, "step": line.step, "stream": stream_name(line.stream),
            "text": line.text(), "continuation": line.continuation, "at": at,
        }))
    if page.ended:
        out.append(json.dumps({"ended": page.ended}))
    return "".join(item + "\n" for item in out).encode()


def jobs_table(jobs: Sequence[admin_pb2.JobInfo]) -> list[str]:
    rows = [("JOB", "KEY", "STATE", "ATTEMPT", "RUNS ON", "HOST", "COMMIT", "UPDATED")]
    for job in jobs:
        rows.append((
            job.job_id, job.key, state_name(job.state), str(job.attempt), job.runs_on, job.host or "-",
            job.checkout.sha[:10] or "-", _age(job.updated_at),
        ))
    return table(rows)


def job_details(job: admin_pb2.JobInfo) -> list[str]:
    """``ciadm status``: the job's fields, its current attempt's steps, then every attempt."""
    start, end = job.started_at, job.finished_at
    took = ""
    if (start.seconds or start.nanos) and (end.seconds or end.nanos):
        took = duration((end.ToDatetime() - start.ToDatetime()).total_seconds())
    fields = [
        ("job", job.job_id), ("key", job.key), ("run", job.run_id), ("state", state_name(job.state)),
        ("reason", job.reason or "-"), ("attempt", str(job.attempt)), ("runs on", job.runs_on),
        ("host", job.host or "-"), ("driver", job.driver or "-"), ("source", source_text(job)),
        ("repo", job.checkout.repo or "-"), ("ref", job.checkout.ref or "-"), ("commit", job.checkout.sha or "-"),
        ("needs", ", ".join(job.needs) or "-"), ("created", _time(job.created_at) or "-"),
        ("started", _time(start) or "-"), ("finished", _time(end) or "-"), ("took", took or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {value}" for name, value in fields]
    if job.steps:
        lines.append("")
        rows = [("STEP", "NAME", "STATE", "EXIT", "DURATION")]
        for s in job.steps:
            rows.append((str(s.index + 1), s.name, step_state_name(s.state),
                         str(s.exit_code) if s.state in (jobs_pb2.STEP_STATE_SUCCEEDED, jobs_pb2.STEP_STATE_FAILED)
                         else "-", duration(s.duration_seconds) if s.duration_seconds else "-"))
        lines.extend(table(rows))
    if job.attempts:
        lines.append("")
        lines.extend(attempts_table(job.attempts))
    return lines


def attempts_table(attempts: Sequence[admin_pb2.AttemptInfo]) -> list[str]:
    """Every attempt of a job: where it ran, when, and how it ended (a requeue says why)."""
    rows = [("ATTEMPT", "HOST", "QUEUED", "STARTED", "FINISHED", "HOW IT ENDED")]
    for a in attempts:
        ended = state_name(a.state) + (f": {a.reason}" if a.reason else "")
        rows.append((str(a.attempt), a.host or "-", _time(a.queued_at) or "-", _time(a.started_at) or "-",
                     _time(a.finished_at) or "-", ended))
    return table(rows)


def hosts_table(hosts: Sequence[admin_pb2.HostInfo]) -> list[str]:
    rows = [("HOST", "LABELS", "CAPACITY", "RUNNING", "HEARTBEAT", "DRAINING", "ALIVE")]
    for h in hosts:
        ago = duration(h.heartbeat_age_seconds) + " ago"
        rows.append((h.name, ",".join(h.labels) or "*", str(h.capacity), str(h.running), ago,
                     "yes" if h.draining else "no", "yes" if h.alive else f"no, lost {ago}"))
    return table(rows)


def secret_json(info: admin_pb2.SecretInfo) -> dict[str, Any]:
    """A secret as ``ciadm secret list`` shows it: never a value (the answer has none)."""
    return {"scope": info.scope, "name": info.name, "refs": list(info.refs), "updated_at": _time(info.updated_at),
            "store": info.store, "key_id": info.key_id, "version": info.version}


def secrets_table(secrets: Sequence[admin_pb2.SecretInfo]) -> list[str]:
    rows = [("NAME", "SCOPE", "REFS", "UPDATED")]
    for info in secrets:
        rows.append((info.name, info.scope, ", ".join(info.refs) or "every ref", _age(info.updated_at)))
    return table(rows)


def delivery_json(record: admin_pb2.SecretDelivery) -> dict[str, Any]:
    return {"job_id": record.job_id, "attempt": record.attempt, "repo": record.repo, "ref": record.ref,
            "names": list(record.names), "outcome": record.outcome, "reason": record.reason, "host": record.host,
            "store": record.store, "at": _time(record.at)}


def deliveries_table(records: Sequence[admin_pb2.SecretDelivery]) -> list[str]:
    rows = [("AT", "JOB", "ATTEMPT", "REPO", "REF", "SECRETS", "OUTCOME", "HOST")]
    for r in records:
        rows.append((_time(r.at) or "-", r.job_id, str(r.attempt), r.repo, r.ref or "-", ",".join(r.names),
                     r.outcome + (f" ({r.reason})" if r.reason else ""), r.host))
    return table(rows)


def _unix(seconds: float) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%MZ") if seconds else None


def schedule_json(info: admin_pb2.ScheduleInfo) -> dict[str, Any]:
    """A workflow schedule as ``ciadm schedules --json`` shows it (times in UTC, null for none)."""
    return {"forge": info.forge, "repo": info.repo, "branch": info.branch, "cron": info.cron,
            "last_run_at": _unix(info.last_run_at), "next_run_at": _unix(info.next_run_at),
            "last_error": info.last_error or None}


def schedules_table(schedules: Sequence[admin_pb2.ScheduleInfo]) -> list[str]:
    rows = [("REPOSITORY", "BRANCH", "SCHEDULE (UTC)", "LAST RUN", "NEXT RUN", "LAST ERROR")]
    for s in schedules:
        rows.append((f"{s.forge}:{s.repo}", s.branch, s.cron, _unix(s.last_run_at) or "never",
                     _unix(s.next_run_at) or "-", s.last_error or "-"))
    return table(rows)
