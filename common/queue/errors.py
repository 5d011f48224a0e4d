"""Errors of the job queue and event bus.

    SolsticeError
    └── QueueError                the queue could not do what was asked
        ├── QueueUnavailable      the broker (or queue file) cannot be reached  (*)
        ├── PublishFailed         a message was not confirmed as stored         (*)
        ├── InvalidMessage        a message cannot be published as it is
        └── PoisonMessage         a received message cannot be processed;
                                  carries the reason written to the dead letter

(*) also ``common.errors.ServiceUnavailable``: an outage, not the message's fault.
"""

from __future__ import annotations

from common.errors import ServiceUnavailable, SolsticeError


class QueueError(SolsticeError):
    """The job queue or event bus failed."""


class QueueUnavailable(QueueError, ServiceUnavailable):
    """The broker or the queue database cannot be reached."""


class PublishFailed(QueueError, ServiceUnavailable):
    """A publish was not confirmed by the broker; the caller must not assume it is queued."""


class InvalidMessage(QueueError, ValueError):
    """A message lacks what routing needs (job id, label) or has a bad name in it."""


class PoisonMessage(QueueError):
    """A received message can never be processed; ``reason`` goes into the dead letter."""

    def __init__(self, reason: str, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
