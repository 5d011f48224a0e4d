"""``Store``: the one interface to the orchestrator's durable state.

Jobs, their attempts and steps, and the hosts that run them. Two back-ends
implement it (``SqliteStore``, ``PostgresStore``) and one contract test-suite
(tests/store/) holds both to the same behaviour.

Lifetime: a store is unopened until ``open()`` (which connects and applies
the schema migrations), then usable until ``close()``; it cannot be reopened.
``async with store:`` does both; ``open_store(url)`` builds one from a URL.
Every operation is one short transaction and is safe to call concurrently,
from any number of coroutines, stores, processes or hosts: decisions are
made by conditional writes in the database, never by reading and then writing.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import TracebackType

from common.rpc import jobs_pb2
from orchestrator.store.dashsql import DashboardReads
from orchestrator.store.outbox import Announce, OutboxMessage, OutboxRow
from orchestrator.store.records import (
    AddressLease,
    AttemptRecord,
    HostRecord,
    JobFilter,
    JobRecord,
    OperatorTokenRecord,
    StepRecord,
)
from orchestrator.store.states import IgnoreReason, JobState
from orchestrator.store.testsql import TestReports


class Store(DashboardReads, TestReports, abc.ABC):
    """The orchestrator's state: see the module docstring for lifetime and concurrency.

    The dashboard's reads (and the failure notes nodes write for it) are ``DashboardReads``."""

    # -- lifetime ---------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. ``StoreUnavailable``/``MigrationError`` when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connections; idempotent."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- jobs -------------------------------------------------------------
    @abc.abstractmethod
    async def submit(self, request: jobs_pb2.JobRequest) -> JobRecord:
        """Record a new job as attempt 1 in ``queued``.

        Idempotent on ``request.job_id``: submitting an id again changes
        nothing and returns the job as it is now. ``ValueError`` when the
        request has no job_id.
        """

    @abc.abstractmethod
    async def submit_claimed(self, request: jobs_pb2.JobRequest, host: str, vm_name: str,
                             events: Sequence[jobs_pb2.JobEvent] = ()) -> JobRecord | None:
        """``submit`` and ``claim`` of attempt 1 for ``host`` in one step, for a job not stored yet.

        A new job is stored with its first attempt already ``provisioning`` on
        ``host`` (VM ``vm_name``) and ``events`` in ``host``'s outbox, atomically;
        its record is returned. When the job exists (stored before, or by a racing
        submit) nothing changes and None is returned: go on as after ``submit``.
        """

    @abc.abstractmethod
    async def claim(self, job_id: str, attempt: int, host: str, vm_name: str,
                    events: Sequence[jobs_pb2.JobEvent] = ()) -> bool:
        """Take attempt ``attempt`` of a queued job for ``host``: ``queued -> provisioning``.

        Exactly one claimer wins. Claiming again by the SAME host of an
        attempt it holds and that has not finished returns True (a queue
        redelivery) and records ``vm_name`` as the attempt's VM. Any other
        case returns False: another host holds it, it finished, the job has
        a later attempt, or no such job. When it returns True, ``events``
        are in ``host``'s outbox, stored atomically with the claim.
        """

    @abc.abstractmethod
    async def transition(self, job_id: str, attempt: int, to_state: JobState, reason: str = "") -> bool:
        """Move attempt ``attempt`` to ``to_state`` if that is a forward move (see ``states``).

        Returns True when applied. A stale attempt, a duplicate, a backwards
        or a late transition is not applied: it is counted under its
        ``IgnoreReason`` and False is returned.
        """

    @abc.abstractmethod
    async def transition_announced(self, job_id: str, attempt: int, to_state: JobState, reason: str,
                                   host: str, events: Sequence[jobs_pb2.JobEvent]) -> bool:
        """``transition``, and when it applies, ``outbox_add(host, events)`` in the SAME transaction:
        a process killed right after the state change cannot lose the events that report it."""

    @abc.abstractmethod
    async def cancel(self, job_id: str, reason: str = "cancelled") -> JobRecord:
        """Cancel the job's current attempt unless it already finished; returns the job. ``JobNotFound``."""

    @abc.abstractmethod
    async def retry(self, job_id: str, announce: Announce | None = None) -> JobRecord:
        """Start attempt N+1 in ``queued`` for a finished job; returns the job as it is now.

        ``announce`` stores the messages that publish it (its event and request) in the
        same transaction; without it the caller publishes the request. ``JobNotFound``,
        or ``RetryNotAllowed`` when the job has not finished.
        """

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None."""

    @abc.abstractmethod
    async def list_jobs(self, job_filter: JobFilter = JobFilter()) -> list[JobRecord]:
        """Jobs matching every set field of ``job_filter``, newest first."""

    @abc.abstractmethod
    async def jobs_of_run(self, run_id: str) -> list[JobRecord]:
        """Every job of a workflow run, in submission order (to resolve ``needs``)."""

    @abc.abstractmethod
    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        """Every attempt of the job, first first; empty for an unknown job."""

    # -- steps ------------------------------------------------------------
    @abc.abstractmethod
    async def record_step(self, job_id: str, attempt: int, step: jobs_pb2.StepResult, *, host: str = "",
                          events: Sequence[jobs_pb2.JobEvent] = ()) -> bool:
        """Store the result of one step of one attempt (keyed by ``step.index``).

        A step may be reported running and later finished; once it has a
        final state a later report of it is ignored (returns False).
        ``AttemptNotFound`` for an unknown job or attempt. When it returns
        True, ``events`` are in ``host``'s outbox, stored atomically with it.
        """

    @abc.abstractmethod
    async def steps(self, job_id: str, attempt: int) -> list[StepRecord]:
        """The steps recorded for one attempt, by index."""

    # -- hosts ------------------------------------------------------------
    @abc.abstractmethod
    async def register_host(self, name: str, labels: Sequence[str], capacity: int) -> HostRecord:
        """Add or update a host (and count as its heartbeat). ``draining`` is kept across re-registration."""

    @abc.abstractmethod
    async def heartbeat(self, name: str, running: int) -> HostRecord:
        """Record that the host is alive and runs ``running`` jobs; returns the host.

        The returned ``draining`` tells the node whether to stop taking work.

        ``HostNotFound`` when the host never registered.
        """

    @abc.abstractmethod
    async def set_draining(self, name: str, draining: bool) -> HostRecord:
        """Set or clear the host's drain flag. ``HostNotFound``."""

    @abc.abstractmethod
    async def list_hosts(self, stale_after: float | None = None) -> list[HostRecord]:
        """Every host by name; ``alive`` = last heartbeat at most ``stale_after`` s ago (default: the store's)."""

    @abc.abstractmethod
    async def requeue_lapsed(self, stale_after_seconds: float, max_attempts: int,
                             announce: Announce | None = None) -> list[JobRecord]:
        """Take jobs away from hosts whose heartbeat is older than ``stale_after_seconds``.

        Each provisioning/running job of such a host has its attempt ended
        as ``errored`` and gets a NEW attempt in ``queued`` - or, when it has
        already had ``max_attempts`` attempts, the job ends ``errored`` with
        the reason. Returns every job changed, as it is now. ``announce``
        stores, in the same transaction, what publishes each change (the
        ``queued`` ones' requests, every change's event); without it the
        caller publishes them. Concurrent sweeps by several hosts change
        each job once. Jobs of hosts that never registered are left alone.
        """

    @abc.abstractmethod
    async def requeue_host(self, host: str, max_attempts: int, why: str = "restarted",
                           announce: Announce | None = None, keep: Collection[str] = (),
                           claimed_before: float = 0.0) -> list[JobRecord]:
        """Take back every provisioning/running job of ``host``, as ``requeue_lapsed`` does,
        except the jobs whose ids are in ``keep`` and attempts claimed less than
        ``claimed_before`` s ago (by the database's clock).

        For a node starting up: attempts its previous process held died with
        it, and its fresh heartbeat would hide them from ``requeue_lapsed``.
        Call it before registering/consuming. A running node passes the jobs it
        runs as ``keep``, and a ``claimed_before`` longer than a claim takes, to
        finish the attempts it lost track of (a claim committing while this
        runs is not in ``keep`` yet).
        """

    @abc.abstractmethod
    async def live_vm_names(self, host: str) -> set[str]:
        """VM names of the host's attempts that are provisioning or running (reconciliation keeps these)."""

    # -- guest address leases (bhyve address pools) --------------------------
    @abc.abstractmethod
    async def lease_address(self, pool: str, host: str, vm_name: str, candidates: Iterable[str]) -> str | None:
        """Give VM ``vm_name`` of ``host`` the first of ``candidates`` no VM holds in ``pool``.

        Returns that address, or None when every candidate is taken. Asking
        again for a VM that holds an address of ``pool`` returns it unchanged;
        a VM holds one address at most (``ValueError`` if it holds another
        pool's). No two VMs ever hold one address of a pool, however many
        stores, processes and hosts lease at once.
        """

    @abc.abstractmethod
    async def release_address(self, host: str, vm_name: str) -> bool:
        """Give back the address VM ``vm_name`` of ``host`` holds; False when it held none."""

    @abc.abstractmethod
    async def address_leases(self, pool: str | None = None, host: str | None = None) -> list[AddressLease]:
        """The leases held, by pool then address; only ``pool``'s / ``host``'s when given."""

    # -- outbox of events and job requests (durable, at-least-once) ----------------
    @abc.abstractmethod
    async def outbox_add(self, host: str, messages: Sequence[OutboxMessage]) -> None:
        """Store ``messages`` (events, ``OutboxRequest``s; in order, one statement) for ``host`` to publish."""

    @abc.abstractmethod
    async def outbox_rows(self, host: str) -> list[OutboxRow]:
        """Every unpublished ``(seq, message)`` of ``host``, oldest first."""

    @abc.abstractmethod
    async def outbox_delete(self, event_ids: Sequence[str]) -> None:
        """Forget messages the broker confirmed, by ``message_id``; unknown ids are ignored."""

    @abc.abstractmethod
    async def outbox_adopt(self, host: str, stale_after_seconds: float) -> list[OutboxRow]:
        """Give ``host`` the rows of hosts whose heartbeat is older than ``stale_after_seconds``
        (or that never registered); concurrent adopters get disjoint rows. Oldest first."""

    # -- operator tokens (orchestrator.operators says what a token is) -----
    @abc.abstractmethod
    async def add_operator_token(self, token_id: str, name: str, role: str, token_hash: str,
                                 expires_in: float | None) -> OperatorTokenRecord:
        """Store a new token (``expires_in`` seconds from now by the database clock; None = never).

        ``ConstraintViolation`` when ``token_id`` exists or a live token has ``name``.
        """

    @abc.abstractmethod
    async def operator_token(self, token_id: str) -> OperatorTokenRecord | None:
        """The token with that public id (live, expired or revoked), or None."""

    @abc.abstractmethod
    async def operator_tokens(self) -> list[OperatorTokenRecord]:
        """Every token, newest first."""

    @abc.abstractmethod
    async def revoke_operator_token(self, name_or_id: str) -> OperatorTokenRecord | None:
        """Revoke the live token with that name or id; None when there is none."""

    # -- clone-URL credentials, apart from the job record ----------------------
    @abc.abstractmethod
    async def put_clone_credentials(self, job_id: str, userinfo: str) -> None:
        """Keep the ``user:password`` of ``job_id``'s clone URL (replacing any); store it before the job."""

    @abc.abstractmethod
    async def clone_credentials(self, job_id: str) -> str | None:
        """The job's clone credentials while it is unfinished; None once purged or when it has none."""

    @abc.abstractmethod
    async def purge_clone_credentials(self) -> int:
        """Forget the credentials of finished jobs (and of jobs never stored, after an hour); how many."""

    # -- retention (orchestrator.logstore.retention) -------------------------
    @abc.abstractmethod
    async def expired_jobs(self, older_than: float, limit: int = 1000) -> list[str]:
        """Jobs whose current attempt finished more than ``older_than`` s ago (by the store's
        clock), oldest first, at most ``limit``."""

    @abc.abstractmethod
    async def delete_jobs(self, job_ids: Sequence[str], older_than: float) -> list[str]:
        """Delete these jobs with their attempts and steps, each only if it is still expired
        (a retry since ``expired_jobs`` keeps it); the ids deleted."""

    # -- counters ---------------------------------------------------------
    @abc.abstractmethod
    async def ignored_transitions(self) -> int:
        """How many transitions were ignored, ever (persisted)."""

    @abc.abstractmethod
    async def ignored_transitions_by_reason(self) -> Mapping[IgnoreReason, int]:
        """The ignored-transition count per reason (reasons never seen are absent)."""
