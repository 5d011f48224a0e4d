"""The greenness degree of one commit in one scope, from its jobs' outcomes (pure; no I/O).

degree = (weight of the required jobs that are not green) / (weight of all required jobs):
0 when every required job succeeded, 1 when none did. Failed, cancelled,
errored (dead-lettered and lost jobs end errored or failed, with their
reason) all count as not green. While a required job has not reported the
degree is None and the commit is PENDING - or INCOMPLETE once
``incomplete_after`` seconds have passed since the commit reached the queue.
Never green by default: a commit with no required job at all is not green.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from integration.greenness.model import WHOLE, JobRecord, Status, Verdict

MAX_REASONS = 20  # a verdict names at most this many jobs; the rest are counted


def in_scope(jobs: Iterable[JobRecord], project: str) -> list[JobRecord]:
    """The jobs that count for ``project`` (every job for the whole queue)."""
    return [j for j in jobs if project == WHOLE or project in j.projects]


def judge(jobs: Sequence[JobRecord], waited: float, incomplete_after: float) -> Verdict:
    """The verdict of a commit whose scope has ``jobs``, ``waited`` seconds after it reached the queue."""
    required = [j for j in jobs if j.required]
    if not required:
        return Verdict(Status.NOT_GREEN, 1.0, ("no required job validates it",))
    missing = [j for j in required if not j.reported]
    if missing:
        names = _names(j.job for j in missing)
        if waited >= incomplete_after:
            return Verdict(Status.INCOMPLETE, None,
                           (f"incomplete: {names} did not report within {_duration(incomplete_after)}",))
        return Verdict(Status.PENDING, None, (f"waiting for {names}",))
    total = sum(j.weight for j in required)
    failing = [j for j in required if not j.green]
    carried = {j.carried_from for j in jobs}
    carried_from = carried.pop() if len(carried) == 1 else ""
    if not failing:
        return Verdict(Status.GREEN, 0.0, (), carried_from)
    degree = sum(j.weight for j in failing) / total if total > 0 else 1.0
    reasons = tuple(_why(j) for j in failing[:MAX_REASONS])
    if len(failing) > MAX_REASONS:
        reasons += (f"and {len(failing) - MAX_REASONS} more job(s) not green",)
    return Verdict(Status.NOT_GREEN, round(degree, 6), reasons, carried_from)


def _why(job: JobRecord) -> str:
    text = f"{job.job} {job.state}"
    if job.reason:
        text += f": {job.reason[:200]}"
    if job.carried_from:
        text += f" (carried from {job.carried_from[:12]})"
    return text


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    shown = ", ".join(listed[:MAX_REASONS])
    return shown + (f" and {len(listed) - MAX_REASONS} more" if len(listed) > MAX_REASONS else "")


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
