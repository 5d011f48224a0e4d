"""``/<forge>/<owner>/<repo>/pull/<n>``: a pull request's jobs by head commit and attempt, newest first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from dashboard.ansi import escape as e
from dashboard.columns import ExternalResult
from dashboard.links import ForgeLinks
from dashboard.pages.layout import Viewer, badge, crumb, duration, page, repo_path, short_sha, when
from orchestrator.store import AttemptRecord, JobRow


def _attempt_seconds(attempt: AttemptRecord) -> float | None:
    if attempt.started_at is None or attempt.finished_at is None:
        return None
    return (attempt.finished_at - attempt.started_at).total_seconds()


def _item(job: JobRow, attempt: AttemptRecord, now: datetime) -> str:
    reason = f' <span class="muted">{e(attempt.reason.splitlines()[0])}</span>' if attempt.reason else ""
    if job.tests is not None and attempt.attempt == job.attempt:  # the counts are the current attempt's
        reason += f' <span class="tests">tests: {e(job.tests.text())}</span>'
    return (f'<li>{badge(attempt.state)} <a href="/jobs/{e(job.job_id)}?attempt={attempt.attempt}">{e(job.name)}</a>'
            f' <span class="muted">{duration(_attempt_seconds(attempt))} ·'
            f" {when(attempt.finished_at or attempt.queued_at, now)}</span>{reason}</li>")


def render(forge: str, repo: str, number: int, jobs: Sequence[JobRow], attempts: Mapping[str, Sequence[AttemptRecord]],
           external: Mapping[str, Sequence[ExternalResult]], problems: Sequence[str], links: ForgeLinks,
           viewer: Viewer, now: datetime) -> str:
    # head commit (newest first, by its newest job) -> attempt number (newest first) -> jobs
    commits: dict[str, dict[int, list[tuple[JobRow, AttemptRecord]]]] = {}
    for job in jobs:  # newest job first
        for attempt in attempts.get(job.job_id, ()):
            commits.setdefault(job.sha, {}).setdefault(attempt.attempt, []).append((job, attempt))
    sections = []
    for sha, by_attempt in commits.items():
        url = links.commit(forge, repo, sha)
        title = (f'<a href="{e(url)}" rel="noreferrer"><code>{e(short_sha(sha))}</code></a>' if url
                 else f"<code>{e(short_sha(sha))}</code>")
        blocks = []
        for number_, pairs in sorted(by_attempt.items(), reverse=True):
            items = "".join(_item(j, a, now) for j, a in sorted(pairs, key=lambda pair: pair[0].name))
            blocks.append(f'<h3>Attempt {number_}</h3><ul class="jobs">{items}</ul>')
        ext = external.get(sha, ())
        ext_items = "".join(
            f'<li>{badge(r.state)} ' + (f'<a href="{e(r.safe_url)}" rel="noreferrer noopener">{e(r.column)}</a>'
                                        if r.safe_url else e(r.column))
            + (f' <span class="muted">{e(r.summary)}</span>' if r.summary else "") + "</li>" for r in ext)
        ext_block = (f'<details class="external"><summary>External CI ({len(ext)})</summary>'
                     + (f'<ul class="jobs">{ext_items}</ul>' if ext else '<p class="muted">No external results '
                        'for this commit.</p>') + "</details>")
        sections.append(f'<section class="commit" aria-label="Commit {e(short_sha(sha))}"><h2>Commit {title}</h2>'
                        f'{"".join(blocks)}{ext_block}</section>')
    forge_url = links.pull(forge, repo, number)
    on_forge = f' <a class="muted" href="{e(forge_url)}" rel="noreferrer">on {e(forge)}</a>' if forge_url else ""
    notes = "".join(f'<p class="notice">{e(p)}</p>' for p in problems)
    body = (f"<h1>{e(repo)} #{number}{on_forge}</h1>{notes}"
            + ("".join(sections) or '<p class="muted">No jobs for this pull request.</p>'))
    base = repo_path(forge, repo)
    return page(f"{repo} #{number}", body, viewer, crumbs=crumb((repo, base), (f"#{number}", f"{base}/pull/{number}")))
