"""Rows of the greenness tables as the model's dataclasses, and back."""

from __future__ import annotations

import json
from dataclasses import dataclass

from integration.greenness.model import CommitVerdict, HistoryEntry, JobRecord, QueueKey, Status, Verdict


@dataclass(frozen=True, slots=True)
class Delivery:
    """One transition to deliver to one hook; its row is also the hook's delivery log."""

    id: str  # the delivery id the receiver sees (X-Solstice-Delivery)
    hook: str
    queue: str
    number: int  # the queue's transition number: delivered in this order
    body: str  # the Transition as JSON
    state: str  # pending, delivered
    attempts: int
    next_at: float
    last_error: str
    created_at: float
    delivered_at: float | None

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "hook": self.hook, "queue": self.queue, "transition": self.number,
                "state": self.state, "attempts": self.attempts, "next_at": self.next_at,
                "last_error": self.last_error, "created_at": self.created_at, "delivered_at": self.delivered_at,
                "body": json.loads(self.body)}


DELIVERY_COLUMNS = "id, hook, queue, n, body, state, attempts, next_at, last_error, created_at, delivered_at"
JOB_COLUMNS = "job, required, weight, projects, state, reason, attempt, carried_from"
VERDICT_COLUMNS = ("v.queue, v.project, v.sha, v.seq, v.status, v.degree, v.reasons, v.carried_from, v.recorded_at,"
                   " c.plan")


def _int(value: object) -> int:
    assert isinstance(value, int | float | str), value
    return int(value)


def _float(value: object) -> float:
    assert isinstance(value, int | float | str), value
    return float(value)


def delivery(row: tuple[object, ...]) -> Delivery:
    id_, hook, queue, n, body, state, attempts, next_at, last_error, created_at, delivered_at = row
    return Delivery(str(id_), str(hook), str(queue), _int(n), str(body), str(state), _int(attempts),
                    _float(next_at), str(last_error), _float(created_at),
                    None if delivered_at is None else _float(delivered_at))


def job(row: tuple[object, ...]) -> JobRecord:
    name, required, weight, projects, state, reason, attempt, carried_from = row
    return JobRecord(str(name), bool(required), _float(weight), tuple(json.loads(str(projects))), str(state),
                     str(reason), _int(attempt), str(carried_from))


def verdict(row: tuple[object, ...]) -> CommitVerdict:
    queue, project, sha, seq, status, degree, reasons, carried_from, recorded_at, plan = row
    v = Verdict(Status(str(status)), None if degree is None else _float(degree),
                tuple(json.loads(str(reasons))), str(carried_from))
    return CommitVerdict(QueueKey.parse(str(queue)), str(project), str(sha), _int(seq), v, _float(recorded_at),
                         str(plan or ""))


def history(row: tuple[object, ...]) -> HistoryEntry:
    project, sha, at, event, reason = row
    return HistoryEntry(str(project), str(sha), float(at), str(event), str(reason))  # type: ignore[arg-type]
