"""A validated workflow + a checkout -> one ``JobRequest`` per job to run.

Shared by ``cidev run`` and ``ciadm submit``: both turn a workflow file into
the same requests the forge integration would publish for a push.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from common.artifacts import output_specs
from common.errors import SolsticeError
from common.rpc import jobs_pb2
from common.workflow import Workflow, merge_env

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SelectionError(SolsticeError):
    """A ``--job``, ``--env`` or ``--secret`` argument names something that is not there."""


def new_id(kind: str) -> str:
    """A unique id whose text says what it is (``job-…``, ``run-…``)."""
    return f"{kind}-{uuid.uuid4().hex}"


def parse_assignments(values: Iterable[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a dict; a malformed one is a ``SelectionError``."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not _NAME.match(name):
            raise SelectionError(f"{what} {value.split('=', 1)[0]!r}: expected NAME=VALUE with NAME like [A-Za-z_][A-Za-z0-9_]*")
        out[name] = rest
    return out


def select_jobs(workflow: Workflow, wanted: Sequence[str]) -> list[str]:
    """The ids to run, in file order: ``wanted`` and everything they need (all jobs when empty)."""
    ids = [job.id for job in workflow.jobs]
    if not wanted:
        return ids
    unknown = [w for w in wanted if w not in ids]
    if unknown:
        raise SelectionError(f"no job {unknown[0]!r} in the workflow; its jobs are: {', '.join(ids)}")
    chosen: set[str] = set()
    pending = list(wanted)
    while pending:
        job_id = pending.pop()
        if job_id not in chosen:
            chosen.add(job_id)
            pending.extend(workflow.job(job_id).needs)
    return [i for i in ids if i in chosen]


def workflow_requests(
    workflow: Workflow,
    checkout: jobs_pb2.Checkout,
    *,
    origin: str,
    jobs: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> list[jobs_pb2.JobRequest]:
    """Requests for the ``jobs`` ids (see ``select_jobs``) of one run; ``env`` overrides the workflow's."""
    run = run_id or new_id("run")
    now = Timestamp()
    now.GetCurrentTime()
    out = []
    for job_id in select_jobs(workflow, jobs):
        job = workflow.job(job_id)
        job_env = dict(merge_env(workflow.env, job.env, tuple((env or {}).items())))
        artifacts, caches = output_specs(job)
        out.append(jobs_pb2.JobRequest(
            schema_version=jobs_pb2.SCHEMA_VERSION_1,
            job_id=new_id("job"),
            run_id=run,
            key=job.id,
            name=job.id,
            runs_on=job.runs_on,
            checkout=checkout,
            steps=[
                jobs_pb2.Step(name=step.title, run=step.run, env=dict(step.env),
                              timeout_seconds=step.timeout or 0.0, workdir=step.workdir or "",
                              continue_on_error=step.continue_on_error)
                for step in job.steps
            ],
            env=job_env,
            timeout_seconds=job.timeout or 0.0,
            needs=list(job.needs),
            secrets=list(job.secrets),
            trusted=True,
            workflow_name=workflow.name or "",
            submitted_at=now,
            origin=origin,
            artifacts=artifacts,
            caches=caches,
        ))
    return out
