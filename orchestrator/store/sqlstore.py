"""``SqlStore``: every rule of the ``Store`` contract, written once in SQL.

The back-ends (sqlite.py, postgres.py) only connect, run statements and
transactions and render the dialect tokens (see backend.py), so both behave
the same by construction.

State lives in ``attempts``; ``jobs.attempt`` names the current attempt. A
new attempt is only ever created once the previous one has finished (and a
partial unique index enforces it), so an UNFINISHED attempt is always the
current one. That makes every state change of a running job a single
conditional statement - ``UPDATE attempts ... WHERE state IN (<sources>)
RETURNING`` - run on its own: whoever gets a row back won, and a stale
attempt can never match because it has finished. Reads that follow a
refused write only label the refusal.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from common.rpc import jobs_pb2
from orchestrator.store import migrate
from orchestrator.store.backend import Backend, Tx
from orchestrator.store.credsql import CredentialsSql
from orchestrator.store.dashsql import DashboardSql
from orchestrator.store.errors import AttemptNotFound, ConstraintViolation, JobNotFound, RetryNotAllowed, StoreError
from orchestrator.store.hostsql import HostsSql
from orchestrator.store.interface import Store
from orchestrator.store.leases import LeasesSql
from orchestrator.store.outbox import Announce, OutboxSql, outbox_cte, outbox_insert
from orchestrator.store.records import AttemptRecord, JobFilter, JobRecord, Row, StepRecord
from orchestrator.store.retentionsql import RetentionSql
from orchestrator.store.sqltext import (
    ACTIVE_SQL,
    FILTER_COLUMNS,
    INSERT_JOB,
    JOB_KEYS,
    JOBS_SELECT,
    NEW_ATTEMPT,
    PROVISIONING,
    QUEUED,
    STEP_OPEN_SQL,
    SUBMIT_ONE_STATEMENT,
    TERMINAL_SQL,
    UNFINISHED_SQL,
    job_keys,
    move_sql,
    submit_claimed_statement,
)
from orchestrator.store.states import IgnoreReason, JobState, ignore_reason
from orchestrator.store.testsql import TestReportsSql
from orchestrator.store.tokensql import TokensSql

log = logging.getLogger(__name__)


class _Phase(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class SqlStore(OutboxSql, HostsSql, TokensSql, CredentialsSql, LeasesSql, RetentionSql, DashboardSql, TestReportsSql,
               Store):
    """A ``Store`` over a ``Backend``; ``host_stale_after`` (s) is the default for ``HostRecord.alive``."""

    def __init__(self, backend: Backend, host_stale_after: float = 30.0) -> None:
        self.backend = backend
        self.host_stale_after = host_stale_after
        self._phase = _Phase.UNOPENED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend.where} ({self._phase.value})>"

    # -- lifetime ---------------------------------------------------------
    async def open(self) -> None:
        if self._phase is not _Phase.UNOPENED:
            raise StoreError(f"the store on {self.backend.where} is {self._phase.value}; a store opens once")
        await self.backend.open()
        try:
            applied = await migrate.apply(self.backend)
        except BaseException:
            await self.backend.close()
            raise
        if applied:
            log.info("state store %s: applied schema migrations %s", self.backend.where, applied)
        self._phase = _Phase.OPEN

    async def close(self) -> None:
        if self._phase is _Phase.OPEN:
            self._phase = _Phase.CLOSED
            await self.backend.close()

    def _check_open(self) -> None:
        if self._phase is not _Phase.OPEN:
            raise StoreError(f"the store on {self.backend.where} is {self._phase.value}, not open")

    def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]:
        self._check_open()
        return self.backend.transaction(write)

    async def _run(self, sql: str, *args: object) -> Sequence[Row]:
        self._check_open()
        return await self.backend.run(sql, *args)

    async def _job(self, job_id: str) -> JobRecord | None:
        rows = await self._run(f"{JOBS_SELECT} WHERE j.job_id = $1", job_id)
        return JobRecord.from_row(rows[0]) if rows else None

    # -- jobs -------------------------------------------------------------
    async def submit(self, request: jobs_pb2.JobRequest) -> JobRecord:
        if not request.job_id:
            raise ValueError("a job request needs a job_id to be stored")
        if self.backend.writable_cte:
            rows = await self._run(SUBMIT_ONE_STATEMENT, *job_keys(request))
            record = JobRecord.from_row(rows[0]) if rows else await self._job(request.job_id)
            assert record is not None  # inserted now or before, and jobs are never deleted
            return record
        async with self._tx() as tx:
            inserted = await tx.fetch(f"{INSERT_JOB} RETURNING job_id", *job_keys(request))
            if inserted:
                await tx.execute(NEW_ATTEMPT, request.job_id, 1, "")
            row = await tx.fetchrow(f"{JOBS_SELECT} WHERE j.job_id = $1", request.job_id)
        assert row is not None  # inserted now or before, and jobs are never deleted
        return JobRecord.from_row(row)

    async def submit_claimed(self, request: jobs_pb2.JobRequest, host: str, vm_name: str,
                             events: Sequence[jobs_pb2.JobEvent] = ()) -> JobRecord | None:
        if not request.job_id:
            raise ValueError("a job request needs a job_id to be stored")
        if not host:
            raise ValueError("a claim needs the claiming host's name")
        args = job_keys(request)
        if self.backend.writable_cte:
            # $12 the VM, $13 the host (then the events')
            if events:
                stored, stored_args = outbox_cte("new_job", JOB_KEYS + 2, host, events)
            else:
                stored, stored_args = "stored AS (SELECT 1)", [host]
            rows = await self._run(submit_claimed_statement(stored), *args, vm_name, *stored_args)
            return JobRecord.from_row(rows[0]) if rows else None
        async with self._tx() as tx:
            inserted = await tx.fetch(f"{INSERT_JOB} RETURNING job_id", *args)
            if not inserted:
                return None
            await tx.execute(
                "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, started_at,"
                f" updated_at) VALUES ($1, 1, $2, {PROVISIONING}, '', $3, {{now}}, {{now}}, {{now}})",
                request.job_id, host, vm_name)
            if events:
                await tx.execute(*outbox_insert(host, events))
            row = await tx.fetchrow(f"{JOBS_SELECT} WHERE j.job_id = $1", request.job_id)
        assert row is not None
        return JobRecord.from_row(row)

    async def claim(self, job_id: str, attempt: int, host: str, vm_name: str,
                    events: Sequence[jobs_pb2.JobEvent] = ()) -> bool:
        if not host:
            raise ValueError("a claim needs the claiming host's name")
        args = (job_id, attempt, host, vm_name)
        won = await self._write_announced(
            f"UPDATE attempts SET state = {int(JobState.PROVISIONING)}, host = $3, vm_name = $4, reason = '',"
            " started_at = {now}, updated_at = {now}"
            f" WHERE job_id = $1 AND attempt = $2 AND state = {QUEUED} RETURNING attempt",
            args, host, events,
        )
        if won:
            return True
        # A redelivered request: the holder may claim its own unfinished attempt again.
        return await self._write_announced(
            "UPDATE attempts SET vm_name = $4, updated_at = {now}"
            f" WHERE job_id = $1 AND attempt = $2 AND host = $3 AND state IN {ACTIVE_SQL} RETURNING attempt",
            args, host, events,
        )

    async def transition(self, job_id: str, attempt: int, to_state: JobState, reason: str = "") -> bool:
        to_state = JobState(to_state)
        sql = move_sql(to_state)
        if sql is not None and await self._run(sql, job_id, attempt, int(to_state), reason):
            return True
        await self._count_ignored(job_id, attempt, to_state)
        return False

    async def transition_announced(self, job_id: str, attempt: int, to_state: JobState, reason: str,
                                   host: str, events: Sequence[jobs_pb2.JobEvent]) -> bool:
        to_state = JobState(to_state)
        sql = move_sql(to_state)
        if sql is not None and await self._write_announced(sql, (job_id, attempt, int(to_state), reason),
                                                           host, events):
            return True
        await self._count_ignored(job_id, attempt, to_state)
        return False

    async def _count_ignored(self, job_id: str, attempt: int, to_state: JobState) -> None:
        async with self._tx() as tx:
            row = await tx.fetchrow(f"{JOBS_SELECT} WHERE j.job_id = $1", job_id)
            why = ignore_reason(
                None if row is None else JobState(row["state"]),
                None if row is None else int(row["attempt"]),
                attempt, to_state,
            )
            await tx.execute(
                "INSERT INTO ignored_transitions (reason, n) VALUES ($1, 1)"
                " ON CONFLICT (reason) DO UPDATE SET n = ignored_transitions.n + 1",
                why.value,
            )
        log.info("ignored %s transition of job %s attempt %d to %s", why.value, job_id, attempt, to_state.name.lower())

    async def cancel(self, job_id: str, reason: str = "cancelled") -> JobRecord:
        # Only the current attempt can be unfinished, so no attempt number is needed.
        await self._run(
            f"UPDATE attempts SET state = {int(JobState.CANCELLED)}, reason = $2, updated_at = {{now}},"
            f" finished_at = {{now}} WHERE job_id = $1 AND state IN {UNFINISHED_SQL} RETURNING attempt",
            job_id, reason,
        )
        record = await self._job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def retry(self, job_id: str, announce: Announce | None = None) -> JobRecord:
        async with self._tx() as tx:
            # The EXISTS re-checks under the row lock: of racing retries only the first sees a finished attempt.
            moved = await tx.fetch(
                "UPDATE jobs SET attempt = attempt + 1 WHERE job_id = $1 AND EXISTS (SELECT 1 FROM attempts a"
                f" WHERE a.job_id = jobs.job_id AND a.attempt = jobs.attempt AND a.state IN {TERMINAL_SQL})"
                " RETURNING attempt",
                job_id,
            )
            if moved:
                await tx.execute(NEW_ATTEMPT, job_id, int(moved[0]["attempt"]), "")
            row = await tx.fetchrow(f"{JOBS_SELECT} WHERE j.job_id = $1", job_id)
            record = None if row is None else JobRecord.from_row(row)
            messages = announce.messages(record) if moved and record is not None and announce is not None else ()
            if messages:
                await tx.execute(*outbox_insert(announce.host, messages))  # type: ignore[union-attr]
        if record is None:
            raise JobNotFound(job_id)
        if not moved:
            raise RetryNotAllowed(
                f"job {job_id!r} is {record.state.name.lower()} (attempt {record.attempt}); "
                "only a finished job can be retried"
            )
        return record

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._job(job_id)

    async def list_jobs(self, job_filter: JobFilter = JobFilter()) -> list[JobRecord]:
        conditions = job_filter.conditions()
        # Column names come from a fixed map; values are parameters.
        where = " AND ".join(f"{FILTER_COLUMNS[field]} = ${n}" for n, field in enumerate(conditions, start=1))
        sql = JOBS_SELECT + (f" WHERE {where}" if where else "") + f" ORDER BY j.seq DESC LIMIT ${len(conditions) + 1}"
        rows = await self._run(sql, *conditions.values(), job_filter.limit)
        return [JobRecord.from_row(row) for row in rows]

    async def jobs_of_run(self, run_id: str) -> list[JobRecord]:
        rows = await self._run(f"{JOBS_SELECT} WHERE j.run_id = $1 ORDER BY j.seq", run_id)
        return [JobRecord.from_row(row) for row in rows]

    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        rows = await self._run("SELECT * FROM attempts WHERE job_id = $1 ORDER BY attempt", job_id)
        return [AttemptRecord.from_row(row) for row in rows]

    # -- steps ------------------------------------------------------------
    async def record_step(self, job_id: str, attempt: int, step: jobs_pb2.StepResult, *, host: str = "",
                          events: Sequence[jobs_pb2.JobEvent] = ()) -> bool:
        try:
            return await self._write_announced(
                "INSERT INTO steps (job_id, attempt, idx, name, state, exit_code, duration, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, {now}) ON CONFLICT (job_id, attempt, idx) DO UPDATE SET"
                " name = excluded.name, state = excluded.state, exit_code = excluded.exit_code,"
                " duration = excluded.duration, updated_at = excluded.updated_at"
                f" WHERE steps.state IN {STEP_OPEN_SQL} RETURNING idx",
                (job_id, attempt, step.index, step.name, int(step.state), step.exit_code,
                 float(step.duration_seconds)),
                host, events,
            )
        except ConstraintViolation as err:  # the foreign key: no such attempt
            raise AttemptNotFound(job_id, attempt) from err

    async def steps(self, job_id: str, attempt: int) -> list[StepRecord]:
        rows = await self._run("SELECT * FROM steps WHERE job_id = $1 AND attempt = $2 ORDER BY idx", job_id, attempt)
        return [StepRecord.from_row(row) for row in rows]

    # -- counters ---------------------------------------------------------
    async def ignored_transitions(self) -> int:
        [row] = await self._run("SELECT COALESCE(SUM(n), 0) AS total FROM ignored_transitions")
        return int(row["total"])

    async def ignored_transitions_by_reason(self) -> Mapping[IgnoreReason, int]:
        rows = await self._run("SELECT reason, n FROM ignored_transitions")
        return {IgnoreReason(row["reason"]): int(row["n"]) for row in rows}
