"""AdminService.Schedules: the forge integration's schedules as ``ScheduleInfo`` messages.

The schedules live in the integration's store (integration/schedules.py); a
node that shares the process with the integration (``solstice serve``) is
given a reader of them (``NodeParts.schedules``), any other answers
FAILED_PRECONDITION.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from common.cron import CronError, parse_cron
from common.rpc import admin_pb2
from common.schedule_row import ScheduleRow

ScheduleReader = Callable[[], Awaitable[Sequence[ScheduleRow]]]


def schedule_infos(rows: Sequence[ScheduleRow], now: float | None = None) -> list[admin_pb2.ScheduleInfo]:
    """The rows with each one's next tick after ``now``."""
    at = time.time() if now is None else now
    out = []
    for row in rows:
        try:
            following = parse_cron(row.cron).next(at) or 0.0
        except CronError:
            following = 0.0
        out.append(admin_pb2.ScheduleInfo(forge=row.forge, repo=row.repo, branch=row.branch, cron=row.cron,
                                          last_run_at=row.last_run_at, next_run_at=following,
                                          last_error=row.last_error))
    return out
