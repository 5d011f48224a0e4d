"""Errors of the state store.

    SolsticeError
    └── StoreError                    the state store could not do what was asked
        ├── StoreUnavailable          the database cannot be reached, or is overloaded or
        │                             restarting (also ``common.errors.ServiceUnavailable``)
        ├── InvalidStoreUrl           a store URL is not sqlite:... or postgresql://...
        ├── MigrationError            the schema cannot be brought up to date
        ├── ConstraintViolation       a write broke a key or constraint (a bug, or a race lost)
        ├── JobNotFound               no job with that id
        ├── AttemptNotFound           the job has no such attempt
        ├── HostNotFound              no host registered under that name
        └── RetryNotAllowed           a job that has not finished cannot be retried

Library errors (asyncpg, sqlite3) never leave the store: each back-end
translates them into ``StoreUnavailable`` (an outage: worth waiting out) or
``StoreError`` (the statement itself failed) with a sentence naming the
database, chained (``raise ... from``) to the original.
"""

from __future__ import annotations

from common.errors import ServiceUnavailable, SolsticeError


class StoreError(SolsticeError):
    """The state store failed; ``str(err)`` says what and where."""


class StoreUnavailable(StoreError, ServiceUnavailable):
    """The database cannot be reached (or is restarting, overloaded, out of connections)."""


class InvalidStoreUrl(StoreError, ValueError):
    """A store URL is malformed or names an unsupported database."""


class MigrationError(StoreError):
    """The schema migrations cannot be applied (or the database is newer than this code)."""


class ConstraintViolation(StoreError):
    """A write violated a key or constraint of the schema; the store turns the expected ones into clearer errors."""


class JobNotFound(StoreError, LookupError):
    """No job with the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class AttemptNotFound(StoreError, LookupError):
    """The job exists but not with this attempt number."""

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"job {job_id!r} has no attempt {attempt}")
        self.job_id = job_id
        self.attempt = attempt


class HostNotFound(StoreError, LookupError):
    """No host registered under the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no host named {name!r} is registered")
        self.name = name


class RetryNotAllowed(StoreError):
    """Only a job in a terminal state can be retried."""
