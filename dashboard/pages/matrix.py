"""``/<forge>/<owner>/<repo>``: the latest commits of a branch (rows) x job names (columns)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from dashboard.ansi import escape as e
from dashboard.columns import ExternalResult
from dashboard.links import ForgeLinks
from dashboard.pages.layout import (
    ICONS,
    Viewer,
    crumb,
    duration,
    page,
    ref_name,
    repo_path,
    short_sha,
    state_name,
    when,
)
from orchestrator.store import CommitRow, JobRow, RefRow

LEGEND = ("queued", "running", "succeeded", "failed", "cancelled", "errored")


@dataclass(frozen=True)
class MatrixView:
    """What the matrix page shows (the app reads it from the store and the column sources)."""

    forge: str
    repo: str
    ref: str
    refs: Sequence[RefRow]
    commits: Sequence[CommitRow]
    cells: Sequence[JobRow]
    external: Mapping[str, Sequence[ExternalResult]]  # sha -> results
    problems: Sequence[str]  # column sources that could not answer
    older: int | None  # first_seq to page on from, None on the last page
    paged: bool  # not the newest page
    notes: Sequence[str] = ()  # column sources' lines about the branch (greenness: its last green commit)


def cell_state(job: JobRow) -> str:
    """The matrix's six states: provisioning shows as running (a host is on it)."""
    name = state_name(job.state)
    return "running" if name == "provisioning" else name


def _seconds(job: JobRow, now: datetime) -> float | None:
    if job.finished_at is not None and job.running_at is not None:
        return (job.finished_at - job.running_at).total_seconds()
    if job.running_at is not None:
        return (now - job.running_at).total_seconds()
    return (now - job.queued_at).total_seconds() if job.finished_at is None else None


def _tip(job: JobRow, now: datetime) -> str:
    state = cell_state(job)
    parts = [f"{job.name}: {state}"]
    seconds = _seconds(job, now)
    if seconds is not None:
        parts.append(("waiting " if state == "queued" else "") + duration(seconds))
    if job.attempt > 1:
        parts.append(f"attempt {job.attempt}")
    if job.tests is not None:
        parts.append(f"tests: {job.tests.text()}")
    if job.note and job.note.line:
        parts.append(f"{job.note.step_name}: {job.note.line}")
    elif job.reason:
        parts.append(job.reason.splitlines()[0])
    return " · ".join(parts)


def job_cell(job: JobRow, now: datetime) -> str:
    state = cell_state(job)
    anchor = f"#L{job.note.line_seq}" if job.note and job.note.line_seq else ""
    tip = _tip(job, now)
    return (f'<td class="cell st-{state}"><a href="/jobs/{e(job.job_id)}{anchor}" aria-label="{e(tip)}">'
            f'<span class="ic" aria-hidden="true">{ICONS[state]}</span><span class="tip" aria-hidden="true">'
            f"{e(tip)}</span></a></td>")


def external_cell(result: ExternalResult) -> str:
    tip = f"{result.column}: {result.state}" + (f" · {result.summary}" if result.summary else "")
    label = f' <span class="lbl" aria-hidden="true">{e(result.label[:8])}</span>' if result.label else ""
    inner = (f'<span class="ic" aria-hidden="true">{ICONS[result.state]}</span>{label}'
             f'<span class="tip" aria-hidden="true">{e(tip)}</span>')
    if result.safe_url:
        inner = f'<a href="{e(result.safe_url)}" rel="noreferrer noopener" aria-label="{e(tip)}">{inner}</a>'
    else:
        inner = f'<span tabindex="0" aria-label="{e(tip)}">{inner}</span>'
    return f'<td class="cell ext st-{e(result.state)}">{inner}</td>'


def _ref_choice(view: MatrixView) -> str:
    branches = [r for r in view.refs if not r.pull_request]
    if not any(r.ref == view.ref for r in branches):
        branches.insert(0, RefRow(view.ref, 0, 0))
    options = "".join(f'<option value="{e(r.ref)}"{" selected" if r.ref == view.ref else ""}>{e(ref_name(r.ref))}'
                      "</option>" for r in branches)
    return (f'<form method="get" class="refs"><label for="ref">Branch</label> <select id="ref" name="ref">'
            f'{options}</select> <button type="submit">Show</button></form>')


def _pulls(view: MatrixView) -> str:
    pulls = [r for r in view.refs if r.pull_request][:20]
    if not pulls:
        return ""
    base = repo_path(view.forge, view.repo)
    items = "".join(f'<li><a href="{e(base)}/pull/{r.pull_request}">#{r.pull_request}</a></li>' for r in pulls)
    return ('<section aria-labelledby="prs-h"><h2 id="prs-h">Recent pull requests</h2>'
            f'<ul class="pulls">{items}</ul></section>')


def render(view: MatrixView, links: ForgeLinks, viewer: Viewer, now: datetime) -> str:
    newest: dict[tuple[str, str], JobRow] = {}
    for job in view.cells:  # oldest first: the newest job of a name wins
        newest[(job.sha, job.name)] = job
    names = sorted({job.name for job in view.cells})
    ext_names = sorted({r.column for results in view.external.values() for r in results})
    head = "".join(f'<th scope="col"><span class="col">{e(name)}</span></th>' for name in names)
    head += "".join(f'<th scope="col" class="ext"><span class="col">{e(name)}</span></th>' for name in ext_names)
    rows = []
    for commit in view.commits:
        external = {r.column: r for r in view.external.get(commit.sha, ())}
        cells = "".join(job_cell(newest[(commit.sha, n)], now) if (commit.sha, n) in newest else
                        '<td class="cell none"><span class="sr">no job</span></td>' for n in names)
        cells += "".join(external_cell(external[n]) if n in external else
                         '<td class="cell none"><span class="sr">no result</span></td>' for n in ext_names)
        url = links.commit(view.forge, view.repo, commit.sha)
        sha = (f'<a href="{e(url)}" rel="noreferrer"><code>{e(short_sha(commit.sha))}</code></a>' if url
               else f"<code>{e(short_sha(commit.sha))}</code>")
        rows.append(f'<tr><th scope="row">{sha} <span class="muted">{when(commit.created_at, now)}</span></th>'
                    f'{cells}</tr>')
    base = repo_path(view.forge, view.repo)
    pager = []
    if view.paged:
        pager.append(f'<a href="{e(base)}?{e(urlencode({"ref": view.ref}))}">Newest</a>')
    if view.older is not None:
        pager.append(f'<a rel="next" href="{e(base)}?{e(urlencode({"ref": view.ref, "before": view.older}))}">'
                     "Older commits</a>")
    legend = " ".join(f'<span class="st st-{s}"><span class="ic" aria-hidden="true">{ICONS[s]}</span> {s}</span>'
                      for s in LEGEND)
    problems = "".join(f'<p class="notice">{e(p)}</p>' for p in view.problems)
    problems += "".join(f'<p class="ref-note">{e(n)}</p>' for n in view.notes)
    forge_url = links.repo(view.forge, view.repo)
    on_forge = f' <a class="muted" href="{e(forge_url)}" rel="noreferrer">on {e(view.forge)}</a>' if forge_url else ""
    table = (f'<div class="scroll tips"><table class="matrix"><caption>Commits of {e(ref_name(view.ref))}, newest first'
             f'</caption><thead><tr><th scope="col">Commit</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
             "</table></div>" if rows else f'<p class="muted">No jobs on {e(ref_name(view.ref))} yet.</p>')
    body = f"""<h1>{e(view.repo)}{on_forge}</h1>
{_ref_choice(view)}
<p class="legend">{legend}</p>
{problems}
{table}
<nav class="pager" aria-label="Pages">{" ".join(pager)}</nav>
{_pulls(view)}"""
    crumbs = crumb((view.repo, base))
    return page(f"{view.repo} ({ref_name(view.ref)})", body, viewer, crumbs=crumbs)
