"""One validated workflow + one build -> one ``JobRequest`` per KDL job."""

from __future__ import annotations

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from common.queue.topology import validate_label
from common.rpc import jobs_pb2
from common.workflow import Workflow
from common.workflow.model import merge_env
from integration.events import BuildRequested


def new_id(kind: str) -> str:
    """A unique id whose text says what it is (``job-…``, ``run-…``); safe as a routing-key word."""
    return f"{kind}-{uuid.uuid4().hex}"


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
        requests.append(
            jobs_pb2.JobRequest(
                schema_version=jobs_pb2.SCHEMA_VERSION_1,
                job_id=new_id("job"),
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
            )
        )
    return requests
