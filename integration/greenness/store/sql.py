"""The greenness store's operations once, as SQL that SQLite and PostgreSQL both run.

Built on ``integration.store.sql.SqlSeenStore``'s primitives and error
mapping. Everything that changes a queue's state - a commit arriving, an
outcome judged, a transition and the hook deliveries it owes - happens in
one transaction that first locks the queue's row (PostgreSQL: ``FOR
UPDATE``; SQLite: ``BEGIN IMMEDIATE``), so replicas sharing the database
number a queue's transitions without gaps or doubles, and a transition is
never recorded without its deliveries (nor the other way round).
"""

from __future__ import annotations

import json
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from integration.errors import StoreError
from integration.greenness.degree import in_scope, judge
from integration.greenness.model import (
    WHOLE,
    CommitVerdict,
    HistoryEntry,
    JobRecord,
    QueueKey,
    ScopeState,
    Status,
    Transition,
    Verdict,
)
from integration.greenness.store import records
from integration.greenness.store.records import DELIVERY_COLUMNS, JOB_COLUMNS, VERDICT_COLUMNS, Delivery
from integration.store.sql import SqlSeenStore

PENDING, DELIVERED = "pending", "delivered"
_VERDICTS = ("SELECT " + VERDICT_COLUMNS + " FROM greenness_verdicts v JOIN greenness_commits c "
             "ON c.queue = v.queue AND c.sha = v.sha ")


_OUTCOME = ("UPDATE greenness_jobs SET state = ?, reason = ?, attempt = ?, carried_from = '', updated_at = ? "
            "WHERE queue = ? AND sha = ? AND job = ? AND run_id = ? AND attempt <= ?")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One job attempt's terminal state, as an event brings it."""

    job: str
    run_id: str
    attempt: int
    state: str
    reason: str = ""

    def args(self, queue: QueueKey, sha: str, now: float) -> tuple[object, ...]:
        return (self.state, self.reason, self.attempt, now, queue.text, sha, self.job, self.run_id, self.attempt)


class GTx(Protocol):
    """Statements inside one transaction, with rows."""

    async def execute(self, sql: str, args: Sequence[object]) -> int: ...

    async def fetch(self, sql: str, args: Sequence[object]) -> list[tuple[object, ...]]: ...


HooksFor = Callable[[str, str], Sequence[str]]  # (queue text, project) -> the hooks that follow it


class SqlGreennessStore(SqlSeenStore):
    """Greenness on top of ``_execute``/``_fetch`` and ``_gtransaction``; subclasses connect and add the tables."""

    if TYPE_CHECKING:  # the SQLite and PostgreSQL seen stores the subclasses also derive from
        async def open(self) -> None: ...

        async def close(self) -> None: ...

    lock_row: str = ""  # PostgreSQL: " FOR UPDATE"

    @abstractmethod
    def _gtransaction(self) -> AbstractAsyncContextManager[GTx]:
        """A transaction whose statements can return rows."""

    async def _in_tx(self, what: str, work: Callable[[GTx], Awaitable[Any]]) -> Any:
        try:
            async with self._gtransaction() as tx:
                return await work(tx)
        except self.errors as err:
            raise StoreError(f"{what}: {err}") from err

    # --- commits arriving -------------------------------------------------------------------------------------

    async def knows(self, queue: QueueKey, sha: str) -> bool:
        """Whether ``sha`` already reached ``queue`` (the dedupe on (queue, head))."""
        rows = await self._rows(f"cannot read the commits of {queue}",
                                "SELECT 1 FROM greenness_commits WHERE queue = ? AND sha = ?", queue.text, sha)
        return bool(rows)

    async def add_commit(self, queue: QueueKey, sha: str, run_id: str, jobs: Sequence[JobRecord], plan: str,
                         now: float) -> bool:
        """Record that ``sha`` reached ``queue`` (made on first use) with the ``jobs`` it expects; False when
        it had already (nothing changes then)."""

        async def work(tx: GTx) -> bool:
            await tx.execute(
                "INSERT INTO greenness_queues (queue, forge, repo, ref, next_seq, next_transition, created_at) "
                "VALUES (?, ?, ?, ?, 1, 1, ?) ON CONFLICT (queue) DO NOTHING",
                (queue.text, queue.forge, queue.repo, queue.ref, now))
            (next_seq,), = await tx.fetch(
                "SELECT next_seq FROM greenness_queues WHERE queue = ?" + self.lock_row, (queue.text,))
            if await tx.fetch("SELECT 1 FROM greenness_commits WHERE queue = ? AND sha = ?", (queue.text, sha)):
                return False
            seq = int(str(next_seq))
            await tx.execute("UPDATE greenness_queues SET next_seq = ? WHERE queue = ?", (seq + 1, queue.text))
            await tx.execute("INSERT INTO greenness_commits (queue, sha, seq, run_id, plan, first_seen_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (queue.text, sha, next_seq, run_id, plan, now))
            for j in jobs:
                await tx.execute(
                    "INSERT INTO greenness_jobs (queue, sha, job, required, weight, projects, run_id, attempt, state, "
                    "reason, carried_from, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (queue.text, sha, j.job, int(j.required), j.weight, json.dumps(list(j.projects)), run_id,
                     j.attempt, j.state, j.reason, j.carried_from, now))
            return True

        return bool(await self._in_tx(f"cannot record {sha[:12]} in {queue}", work))

    async def record_outcome(self, queue: QueueKey, sha: str, job: str, run_id: str, attempt: int, state: str,
                             reason: str, now: float) -> bool:
        """The outcome of attempt ``attempt`` of ``job``; an older attempt's, or another run's, changes nothing.
        (``settle(..., outcome=)`` records it and judges the commit in one transaction.)"""
        return await self._run(f"cannot record the outcome of {job} of {sha[:12]}", _OUTCOME,
                               *Outcome(job, run_id, attempt, state, reason).args(queue, sha, now)) == 1

    async def jobs_of(self, queue: QueueKey, sha: str) -> list[JobRecord]:
        rows = await self._rows(f"cannot read the jobs of {sha[:12]}",
                                f"SELECT {JOB_COLUMNS} FROM greenness_jobs WHERE queue = ? AND sha = ? ORDER BY job",
                                queue.text, sha)
        return [records.job(r) for r in rows]

    async def run_of(self, queue: QueueKey, sha: str) -> str:
        rows = await self._rows(f"cannot read the run of {sha[:12]}",
                                "SELECT run_id FROM greenness_commits WHERE queue = ? AND sha = ?", queue.text, sha)
        return str(rows[0][0]) if rows else ""

    # --- judging -----------------------------------------------------------------------------------------------

    async def settle(self, queue: QueueKey, sha: str, now: float, incomplete_after: float,
                     hooks_for: HooksFor, outcome: Outcome | None = None) -> list[Transition] | None:
        """Judge ``sha`` in every scope, record what changed (verdicts, history, scope states) and the
        transitions it made, each with one pending delivery per hook that follows it. With ``outcome``, it
        is recorded first in the same transaction; None when it changed nothing (nothing is judged then)."""

        async def work(tx: GTx) -> list[Transition] | None:
            locked = await tx.fetch("SELECT next_transition FROM greenness_queues WHERE queue = ?" + self.lock_row,
                                    (queue.text,))
            if outcome is not None and await tx.execute(_OUTCOME, outcome.args(queue, sha, now)) != 1:
                return None
            commit = await tx.fetch("SELECT seq, first_seen_at FROM greenness_commits WHERE queue = ? AND sha = ?",
                                    (queue.text, sha))
            if not locked or not commit:
                return []
            next_transition = int(locked[0][0])  # type: ignore[call-overload]
            seq, first_seen = int(commit[0][0]), float(commit[0][1])  # type: ignore[arg-type, call-overload]
            jobs = [records.job(r) for r in await tx.fetch(
                f"SELECT {JOB_COLUMNS} FROM greenness_jobs WHERE queue = ? AND sha = ?", (queue.text, sha))]
            scopes = [WHOLE, *sorted({p for j in jobs for p in j.projects})]
            made: list[Transition] = []
            for project in scopes:
                verdict = judge(in_scope(jobs, project), now - first_seen, incomplete_after)
                old = await self._verdict(tx, queue, project, sha)
                if verdict.same_as(old):
                    continue
                await tx.execute(
                    "INSERT INTO greenness_verdicts (queue, project, sha, seq, status, degree, reasons, carried_from, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (queue, project, sha) DO UPDATE SET "
                    "status = excluded.status, degree = excluded.degree, reasons = excluded.reasons, "
                    "carried_from = excluded.carried_from, recorded_at = excluded.recorded_at",
                    (queue.text, project, sha, seq, verdict.status.value, verdict.degree,
                     json.dumps(list(verdict.reasons)), verdict.carried_from, now))
                event = _event(old.status if old else None, verdict)
                if event:
                    await self._history(tx, queue, project, sha, now, event, "; ".join(verdict.reasons[:3]))
                transition = await self._follow(tx, queue, project, now, next_transition, hooks_for)
                if transition is not None:
                    made.append(transition)
                    next_transition += 1
            if made:
                await tx.execute("UPDATE greenness_queues SET next_transition = ? WHERE queue = ?",
                                 (next_transition, queue.text))
            return made

        made: list[Transition] | None = await self._in_tx(f"cannot judge {sha[:12]} in {queue}", work)
        return made

    async def _verdict(self, tx: GTx, queue: QueueKey, project: str, sha: str) -> Verdict | None:
        rows = await tx.fetch("SELECT status, degree, reasons, carried_from FROM greenness_verdicts "
                              "WHERE queue = ? AND project = ? AND sha = ?", (queue.text, project, sha))
        if not rows:
            return None
        status, degree, reasons, carried_from = rows[0]
        return Verdict(Status(str(status)), None if degree is None else float(degree),  # type: ignore[arg-type]
                       tuple(json.loads(str(reasons))), str(carried_from))

    async def _history(self, tx: GTx, queue: QueueKey, project: str, sha: str, now: float, event: str,
                       reason: str) -> None:
        (last,), = await tx.fetch("SELECT COALESCE(MAX(n), 0) FROM greenness_history WHERE queue = ?", (queue.text,))
        await tx.execute("INSERT INTO greenness_history (queue, n, project, sha, at, event, reason) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (queue.text, int(last) + 1, project, sha, now, event, reason))  # type: ignore[call-overload]

    async def _follow(self, tx: GTx, queue: QueueKey, project: str, now: float, number: int,
                      hooks_for: HooksFor) -> Transition | None:
        """Bring the scope's state up to date; the transition it made, if its key changed."""
        state = await self._scope(tx.fetch, queue, project)
        rows = await tx.fetch("SELECT last_green, head, head_green FROM greenness_scopes"
                              " WHERE queue = ? AND project = ?", (queue.text, project))
        before = (str(rows[0][0]), bool(rows[0][2])) if rows else ("", False)
        head = state.head.sha if state.head else ""
        await tx.execute(
            "INSERT INTO greenness_scopes (queue, project, last_green, head, head_green, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (queue, project) DO UPDATE SET last_green = excluded.last_green, "
            "head = excluded.head, head_green = excluded.head_green, updated_at = excluded.updated_at",
            (queue.text, project, state.key()[0], head, int(state.green), now))
        if state.key() == before or state.head is None:
            return None
        verdict = state.head.verdict
        reason = f"{head[:12]} is green" if state.green else "; ".join(verdict.reasons[:3]) or verdict.status.value
        transition = Transition(queue, project, number, "green" if state.green else "not-green", head,
                                verdict.degree, state.key()[0], before[0], reason, now)
        body = transition.dumps()
        for hook in hooks_for(queue.text, project):
            await tx.execute(
                f"INSERT INTO greenness_deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, ?, '', ?, NULL)",
                (f"dlv-{uuid.uuid4().hex}", hook, queue.text, number, body, PENDING, now, now))
        return transition

    @staticmethod
    async def _scope(fetch: Callable[[str, Sequence[object]], object], queue: QueueKey, project: str) -> ScopeState:
        where = "WHERE v.queue = ? AND v.project = ? AND "
        green = await fetch(_VERDICTS + where + "v.status = ? ORDER BY v.seq DESC LIMIT 1",  # type: ignore[misc]
                            (queue.text, project, Status.GREEN.value))
        head = await fetch(_VERDICTS + where + "v.status <> ? ORDER BY v.seq DESC LIMIT 1",  # type: ignore[misc]
                           (queue.text, project, Status.PENDING.value))
        return ScopeState(queue, project, records.verdict(green[0]) if green else None,
                          records.verdict(head[0]) if head else None)

    # --- reading -----------------------------------------------------------------------------------------------

    async def scope_state(self, queue: QueueKey, project: str = WHOLE) -> ScopeState:
        """The scope's last-green commit and newest decided commit (one indexed lookup each)."""

        async def fetch(sql: str, args: Sequence[object]) -> list[tuple[object, ...]]:
            return await self._rows(f"cannot read the last green commit of {queue}", sql, *args)

        return await self._scope(fetch, queue, project)

    async def commits(self, queue: QueueKey, project: str = WHOLE, limit: int = 50) -> list[CommitVerdict]:
        """The newest ``limit`` verdicts of the scope, newest first."""
        rows = await self._rows(f"cannot read the commits of {queue}",
                                _VERDICTS + "WHERE v.queue = ? AND v.project = ? ORDER BY v.seq DESC LIMIT ?",
                                queue.text, project, limit)
        return [records.verdict(r) for r in rows]

    async def verdicts_of(self, forge: str, repo: str, shas: Sequence[str]) -> list[CommitVerdict]:
        """The whole-queue verdicts of ``shas`` in every queue of the repository."""
        if not shas:
            return []
        marks = ", ".join("?" for _ in shas)
        # Without the commits' plans: joining them made PostgreSQL scan every commit of the queue.
        rows = await self._rows(
            f"cannot read the greenness of {repo}",
            "SELECT " + VERDICT_COLUMNS.replace("c.plan", "''") + " FROM greenness_verdicts v JOIN greenness_queues q "
            f"ON q.queue = v.queue WHERE q.forge = ? AND q.repo = ? AND v.project = ? AND v.sha IN ({marks})",
            forge, repo, WHOLE, *shas)
        return [records.verdict(r) for r in rows]

    async def queues(self, forge: str = "", repo: str = "") -> list[QueueKey]:
        """Every queue (of one repository, when given)."""
        rows = await self._rows("cannot list the queues",
                                "SELECT forge, repo, ref FROM greenness_queues WHERE (? = '' OR forge = ?) "
                                "AND (? = '' OR repo = ?) ORDER BY forge, repo, ref", forge, forge, repo, repo)
        return [QueueKey(str(f), str(r), str(ref)) for f, r, ref in rows]

    async def projects(self, queue: QueueKey) -> list[str]:
        rows = await self._rows(f"cannot list the projects of {queue}",
                                "SELECT project FROM greenness_scopes WHERE queue = ? ORDER BY project", queue.text)
        return [str(r[0]) for r in rows]

    async def history(self, queue: QueueKey, project: str = WHOLE, limit: int = 50) -> list[HistoryEntry]:
        rows = await self._rows(f"cannot read the history of {queue}",
                                "SELECT project, sha, at, event, reason FROM greenness_history "
                                "WHERE queue = ? AND project = ? ORDER BY n DESC LIMIT ?", queue.text, project, limit)
        return [records.history(r) for r in rows]

    async def pending_before(self, first_seen_before: float, limit: int = 100) -> list[tuple[QueueKey, str]]:
        """Commits still pending that reached their queue before ``first_seen_before`` (due to be "incomplete")."""
        rows = await self._rows(
            "cannot look for incomplete commits",
            "SELECT v.queue, v.sha FROM greenness_verdicts v JOIN greenness_commits c ON c.queue = v.queue AND "
            "c.sha = v.sha WHERE v.status = ? AND v.project = ? AND c.first_seen_at <= ? ORDER BY c.first_seen_at "
            "LIMIT ?", Status.PENDING.value, WHOLE, first_seen_before, limit)
        return [(QueueKey.parse(str(q)), str(s)) for q, s in rows]

    # --- hook deliveries ---------------------------------------------------------------------------------------

    async def take_deliveries(self, now: float, lease: float, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each the oldest pending one of its (hook, queue) - so a queue's transitions reach a
        hook in order - leased to the caller until ``now + lease``."""
        rows = await self._rows(
            "cannot read the due hook deliveries",
            f"SELECT {DELIVERY_COLUMNS} FROM greenness_deliveries d WHERE d.state = ? AND d.next_at <= ? AND NOT "
            "EXISTS (SELECT 1 FROM greenness_deliveries e WHERE e.hook = d.hook AND e.queue = d.queue AND "
            "e.state = ? AND e.n < d.n) ORDER BY d.next_at LIMIT ?", PENDING, now, PENDING, limit)
        taken = []
        for row in rows:
            due = records.delivery(row)
            # Conditional: of replicas reading the same row, one leases it.
            if await self._run("cannot lease a hook delivery",
                               "UPDATE greenness_deliveries SET next_at = ? WHERE id = ? AND state = ? AND next_at = ?",
                               now + lease, due.id, PENDING, due.next_at) == 1:
                taken.append(due)
        return taken

    async def delivered(self, delivery_id: str, attempts: int, at: float) -> None:
        await self._run("cannot record a hook delivery",
                        "UPDATE greenness_deliveries SET state = ?, attempts = ?, delivered_at = ?, last_error = '' "
                        "WHERE id = ?", DELIVERED, attempts, at, delivery_id)

    async def delivery_failed(self, delivery_id: str, attempts: int, next_at: float, error: str) -> None:
        await self._run("cannot record a failed hook delivery",
                        "UPDATE greenness_deliveries SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                        attempts, next_at, error[:1000], delivery_id)

    async def deliveries(self, hook: str = "", limit: int = 50, queue: str = "") -> list[Delivery]:
        """The delivery log, newest first (of one hook, of one queue, when given)."""
        rows = await self._rows("cannot read the hook deliveries",
                                f"SELECT {DELIVERY_COLUMNS} FROM greenness_deliveries WHERE (? = '' OR hook = ?) "
                                "AND (? = '' OR queue = ?) ORDER BY created_at DESC, n DESC LIMIT ?",
                                hook, hook, queue, queue, limit)
        return [records.delivery(r) for r in rows]


def _event(before: Status | None, verdict: Verdict) -> str:
    """The history line a change of status makes ("" for none worth keeping)."""
    after = verdict.status
    if after is before or after is Status.PENDING:
        return ""
    if after is Status.GREEN:
        return "became green"
    if before is Status.GREEN:
        return "stopped being green"
    return "incomplete" if after is Status.INCOMPLETE else "not green"
