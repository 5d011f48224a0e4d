"""One validated workflow + one build -> one ``JobRequest`` per KDL job, checked as Submit checks them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from common.artifacts import output_specs
from common.queue.errors import QueueError
from common.queue.publisher import JobPublisher
from common.queue.topology import validate_label
from common.rpc import jobs_pb2
from common.validation import CloneRules, RequestInvalid, check_requests
from common.workflow import Workflow, WorkflowError, WorkflowInvalid
from common.workflow.model import merge_env
from integration.events import BuildRequested


# Job ids are derived from their run's id and the job's key (uuid5 in this namespace), so a
# build published again - a deferred retry after a partial publish - carries the same ids,
# and the orchestrator takes each job once.
JOB_NAMESPACE = uuid.UUID("5f0c61ce-7c35-4f2b-9d40-2a0c61ce0015")


def new_id(kind: str) -> str:
    """A unique id whose text says what it is (``job-…``, ``run-…``); safe as a routing-key word."""
    return f"{kind}-{uuid.uuid4().hex}"


def job_id_of(run_id: str, key: str) -> str:
    """The id of job ``key`` of run ``run_id``: ``job-`` and 32 hex digits, the same every time."""
    return f"job-{uuid.uuid5(JOB_NAMESPACE, f'{run_id}/{key}').hex}"


def job_requests(workflow: Workflow, build: BuildRequested, run_id: str) -> list[jobs_pb2.JobRequest]:
    """The requests of one run of ``workflow`` for ``build``; ``needs`` are left to the orchestrator."""
    now = Timestamp()
    now.GetCurrentTime()
    checkout = jobs_pb2.Checkout(
        forge=build.repo.forge.value,
        repo=build.repo.full_name,
        clone_url=build.repo.clone_url,
        ref=build.ref,
        sha=build.sha,
        installation_id=build.repo.installation_id,
        pull_request=build.pull_request,
    )
    requests = []
    for job in workflow.jobs:
        env = dict(merge_env(workflow.env, job.env))  # the job's own values win
        artifacts, caches = output_specs(job)
        requests.append(
            jobs_pb2.JobRequest(
                schema_version=jobs_pb2.SCHEMA_VERSION_1,
                job_id=job_id_of(run_id, job.id),
                run_id=run_id,
                key=job.id,
                name=job.id,
                runs_on=validate_label(job.runs_on),
                checkout=checkout,
                steps=[
                    jobs_pb2.Step(
                        name=step.title,
                        run=step.run,
                        env=dict(step.env),
                        timeout_seconds=step.timeout or 0.0,
                        workdir=step.workdir or "",
                        continue_on_error=step.continue_on_error,
                    )
                    for step in job.steps
                ],
                env=env,
                timeout_seconds=job.timeout or 0.0,
                needs=list(job.needs),
                # Names only; an untrusted job gets none of their values (the
                # orchestrator checks ``trusted``), but the names let it say so.
                secrets=list(job.secrets),
                trusted=build.trusted,
                workflow_name=workflow.name or "",
                submitted_at=now,
                origin=build.origin,
                source=jobs_pb2.JOB_SOURCE_FORGE,  # a verified webhook's build: reported back to its forge
                artifacts=artifacts,
                caches=caches,
                cache_base_ref=build.base_ref,  # a pull request reads its base branch's caches
            )
        )
    return requests


def checked_job_requests(
    workflow: Workflow, build: BuildRequested, run_id: str, rules: CloneRules, path: str,
) -> list[jobs_pb2.JobRequest]:
    """``job_requests`` that pass ``common.validation``; a limit a workflow exceeds is ``WorkflowInvalid``."""
    requests = job_requests(workflow, build, run_id)
    try:
        check_requests(requests, rules)
    except RequestInvalid as err:
        # "jobs[2].steps[0].run" -> "job 'lint' > steps[0].run": the user knows jobs by their ids.
        head, _, rest = err.field.partition(".")
        index = head.removeprefix("jobs[").removesuffix("]")
        where = f"job {requests[int(index)].key!r} > {rest}" if index.isdigit() and rest else err.field
        raise WorkflowInvalid([WorkflowError(path, 1, 1, where, err.problem)]) from err
    return requests


async def publish(publisher: JobPublisher, requests: Sequence[jobs_pb2.JobRequest]) -> None:
    """``publisher.publish``; a publisher that publishes concurrently may report its ``QueueError``s
    in an ``ExceptionGroup``: the first of them is raised, so the caller sees the queue failed."""
    try:
        await publisher.publish(requests)
    except ExceptionGroup as group:
        failed, other = group.split(QueueError)
        if failed is None or other is not None:
            raise
        raise _first_error(failed) from group


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf exception of ``group`` (groups nest)."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
