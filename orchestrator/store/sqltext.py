"""The SQL text ``SqlStore`` and its parts share: state sets, the joined job row, fixed statements.

``{now}`` and the other brace tokens are the dialect's, rendered by the back-end
(backend.py); ``$n`` are parameters.
"""

from __future__ import annotations

import functools

from common.rpc import jobs_pb2
from orchestrator.store.states import ACTIVE, TERMINAL, JobState, StepState, sources_of, sql_list

ACTIVE_SQL = sql_list(ACTIVE)
TERMINAL_SQL = sql_list(TERMINAL)
UNFINISHED_SQL = sql_list(frozenset(JobState) - TERMINAL)
STEP_OPEN_SQL = f"({int(StepState.UNSPECIFIED)},{int(StepState.RUNNING)})"
QUEUED = int(JobState.QUEUED)
PROVISIONING = int(JobState.PROVISIONING)
HOST_COLUMNS = "name, labels, capacity, running, last_heartbeat, draining, {now} - last_heartbeat AS age"
# A job row joined with its current attempt: the shape JobRecord.from_row reads.
JOBS_SELECT = (
    "SELECT j.job_id, j.run_id, j.key, j.name, j.runs_on, j.repo, j.ref, j.sha, j.attempt, j.created_at,"
    " j.request, a.state, a.host, a.reason, a.updated_at"
    " FROM jobs j JOIN attempts a ON a.job_id = j.job_id AND a.attempt = j.attempt"
)
NEW_ATTEMPT = (
    "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, updated_at)"
    f" VALUES ($1, $2, '', {QUEUED}, $3, '', {{now}}, {{now}})"
)
# A new job ($1..$11: job_keys() of its request) at attempt 1; nothing when the id is stored.
INSERT_JOB = (
    "INSERT INTO jobs (job_id, run_id, key, name, runs_on, repo, ref, sha, attempt, created_at, request,"
    " forge, pull_request) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, {now}, $9, $10, $11)"
    " ON CONFLICT (job_id) DO NOTHING"
)
# JOB_KEYS: how many parameters job_keys() fills.
JOB_KEYS = 11
_NEW_JOB_CTE = (
    f"WITH new_job AS ({INSERT_JOB}"
    " RETURNING job_id, run_id, key, name, runs_on, repo, ref, sha, attempt, created_at, request)"
)
_NEW_JOB_JOINED = (
    " SELECT j.job_id, j.run_id, j.key, j.name, j.runs_on, j.repo, j.ref, j.sha, j.attempt, j.created_at,"
    " j.request, a.state, a.host, a.reason, a.updated_at FROM new_job j JOIN new_attempt a ON a.job_id = j.job_id"
)
# submit in one statement where the database allows INSERT in WITH: the job, its first attempt,
# and the joined row - inserted now, or the existing one (1 round trip instead of 5 with
# BEGIN/COMMIT). A first submit racing another one of the same job gets no row: the winner's
# rows are not in this statement's snapshot, and the caller reads them with a new statement.
SUBMIT_ONE_STATEMENT = (
    f"{_NEW_JOB_CTE}, new_attempt AS ("
    "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, updated_at)"
    f" SELECT job_id, 1, '', {QUEUED}, '', '', {{now}}, {{now}} FROM new_job"
    " RETURNING job_id, state, host, reason, updated_at)"
    f"{_NEW_JOB_JOINED} UNION ALL {JOBS_SELECT} WHERE j.job_id = $1 AND NOT EXISTS (SELECT 1 FROM new_job)"
)
# JobFilter field -> column of the joined query.
FILTER_COLUMNS = {"repo": "j.repo", "ref": "j.ref", "run_id": "j.run_id", "runs_on": "j.runs_on",
                   "state": "a.state", "host": "a.host"}


@functools.cache
def move_sql(to_state: JobState) -> str | None:
    """The conditional UPDATE ($1 job, $2 attempt, $3 state, $4 reason) moving to ``to_state``; None if nothing can."""
    sources = sources_of(to_state)
    if not sources:
        return None
    stamp = ", finished_at = {now}" if to_state.terminal else ""
    if to_state is JobState.RUNNING:
        stamp = ", running_at = {now}"  # the dashboard's queue time ends here
    return (f"UPDATE attempts SET state = $3, reason = $4, updated_at = {{now}}{stamp}"
            f" WHERE job_id = $1 AND attempt = $2 AND state IN {sql_list(sources)} RETURNING attempt")


def submit_claimed_statement(stored_cte: str) -> str:
    """PostgreSQL: a NEW job with its first attempt claimed ($12 VM, $13 host) and, through
    ``stored_cte`` (``outbox_cte`` guarded by ``new_job``), its events - one statement.
    No row when the job exists: nothing is written then."""
    return (
        f"{_NEW_JOB_CTE}, new_attempt AS ("
        "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, started_at, updated_at)"
        f" SELECT job_id, 1, $13, {PROVISIONING}, '', $12, {{now}}, {{now}}, {{now}} FROM new_job"
        f" RETURNING job_id, state, host, reason, updated_at), {stored_cte}{_NEW_JOB_JOINED}"
    )


def job_keys(request: jobs_pb2.JobRequest) -> tuple[object, ...]:
    """``INSERT_JOB``'s $1..$11 for ``request``."""
    checkout = request.checkout
    return (request.job_id, request.run_id, request.key, request.name or request.key, request.runs_on,
            checkout.repo, checkout.ref, checkout.sha, request.SerializeToString(), checkout.forge,
            int(checkout.pull_request))
