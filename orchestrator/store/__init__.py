"""The orchestrator's state store: jobs, attempts, steps and hosts.

    async with open_store("sqlite:///var/lib/solstice/state.db") as store:
        job = await store.submit(request)
        if await store.claim(job.job_id, job.attempt, "host-a", "solstice-job-1"):
            await store.transition(job.job_id, job.attempt, JobState.RUNNING)

``Store`` (interface.py) is the contract; ``SqliteStore`` and
``PostgresStore`` implement it with the same rules (sqlstore.py). See
docs/store.md.
"""

from orchestrator.store.dashrecords import (
    CommitRow,
    FailureNote,
    Histogram,
    JobRow,
    LabelLoad,
    RefRow,
    RepoSummary,
)
from orchestrator.store.errors import (
    AttemptNotFound,
    ConstraintViolation,
    HostNotFound,
    InvalidStoreUrl,
    JobNotFound,
    MigrationError,
    RetryNotAllowed,
    StoreError,
    StoreUnavailable,
)
from orchestrator.store.interface import Store
from orchestrator.store.outbox import Announce, OutboxMessage, OutboxRequest, message_id
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.records import (
    AddressLease,
    AttemptRecord,
    HostRecord,
    JobFilter,
    JobRecord,
    OperatorTokenRecord,
    StepRecord,
)
from orchestrator.store.sqlite import SqliteStore
from orchestrator.store.states import TERMINAL, IgnoreReason, JobState, StepState, can_move
from orchestrator.store.url import open_store, store_for_url

__all__ = [
    "AddressLease", "Announce", "OutboxMessage", "OutboxRequest", "message_id",
    "AttemptNotFound", "AttemptRecord", "CommitRow", "ConstraintViolation", "FailureNote", "Histogram", "JobRow",
    "LabelLoad", "RefRow", "RepoSummary", "HostNotFound", "HostRecord", "IgnoreReason",
    "InvalidStoreUrl", "OperatorTokenRecord",
    "JobFilter", "JobNotFound", "JobRecord", "JobState", "MigrationError", "PostgresStore", "RetryNotAllowed",
    "SqliteStore", "StepRecord", "StepState", "Store", "StoreError", "StoreUnavailable", "TERMINAL",
    "can_move", "open_store", "store_for_url",
]
