"""A finished job's artifacts are linked from its GitHub check run (through the fake GitHub, schema-checked)."""

from __future__ import annotations

from common.rpc import jobs_pb2
from tests.integration.events import S, job_event, new_job_id, step
from tests.integration.stack import PUBLIC_URL, IntegrationStack


async def test_the_check_run_summary_links_the_jobs_artifacts(stack: IntegrationStack) -> None:
    job = new_job_id()
    event = job_event(job, S.JOB_STATE_SUCCEEDED, steps=(step(0, "Build", jobs_pb2.STEP_STATE_SUCCEEDED),))
    event.artifacts.extend([jobs_pb2.ArtifactInfo(name="dist", files=2, bytes=3 << 20),
                            jobs_pb2.ArtifactInfo(name="logs", files=1, bytes=512)])
    await stack.integration.reporter.handle(event)
    run_id, status, conclusion = stack.github.check_run_statuses()[-1]
    assert (status, conclusion) == ("completed", "success")
    summary = stack.github.check_runs[run_id]["output"]["summary"]
    page = f"{PUBLIC_URL}/jobs/{job}"
    assert (f"**Artifacts:** [dist]({page}#artifacts) (2 files, 3 MiB), "
            f"[logs]({page}#artifacts) (1 files, 512 bytes)") in summary
