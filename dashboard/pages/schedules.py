"""``/schedules``: the workflows' schedules (``on schedule=... branch=...``), their last and next runs.

The schedules live in the forge integration's store (integration/schedules.py);
the process that serves the dashboard hands a reader of them to the ``Backing``
(``common.schedule_row.ScheduleRow``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from common.cron import CronError, parse_cron
from common.schedule_row import ScheduleRow
from dashboard.ansi import escape as e
from dashboard.pages.layout import Viewer, page, repo_path, when


def _moment(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def render(rows: Sequence[ScheduleRow] | None, viewer: Viewer, now: datetime) -> str:
    """The page; ``rows`` None when this dashboard has no reader of the schedules."""
    if rows is None:
        body = ('<p class="notice">This dashboard cannot see the schedules: they are kept by the forge '
                "integration (<code>solstice-integration schedules</code> lists them).</p>")
    elif not rows:
        body = ('<p class="muted">No schedules. A push of a workflow with <code>on schedule="0 3 * * *" '
                'branch="main"</code> to that branch registers one.</p>')
    else:
        cells = []
        for row in rows:
            try:
                following = parse_cron(row.cron).next(now.timestamp())
            except CronError:
                following = None
            repo = f'<a href="{e(repo_path(row.forge, row.repo))}">{e(row.repo)}</a>'
            error = f'<span class="st st-failed">{e(row.last_error)}</span>' if row.last_error else ""
            cells.append(f"<tr><th scope=\"row\">{repo}</th><td>{e(row.branch)}</td><td><code>{e(row.cron)}</code></td>"
                         f"<td>{when(_moment(row.last_run_at), now) if row.last_run_at else 'never'}</td>"
                         f"<td>{when(_moment(following), now) if following else '-'}</td><td>{error}</td></tr>")
        body = ('<table class="repos schedules"><thead><tr><th scope="col">repository</th><th scope="col">branch</th>'
                '<th scope="col">schedule (UTC)</th><th scope="col">last run</th><th scope="col">next run</th>'
                f'<th scope="col">last error</th></tr></thead><tbody>{"".join(cells)}</tbody></table>')
    return page("Schedules", f'<h1>Schedules</h1>{body}', viewer)
