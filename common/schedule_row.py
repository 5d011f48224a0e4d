"""A workflow schedule as operators see it (the dashboard's /schedules, ``ciadm schedules``).

The forge integration keeps schedules in its own store (integration/schedules.py);
this record is what it hands to the readers that show them, so those do not
depend on the integration's types.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One schedule of one branch of one repository."""

    forge: str
    repo: str
    branch: str
    cron: str  # five fields, UTC
    last_run_at: float  # unix time; 0 = never
    last_error: str  # why the last tick's run could not start ("" = it did)
