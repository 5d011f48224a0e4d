"""``/``: every repository's health over a window, worst first; the latest failures; the hosts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from dashboard.ansi import escape as e
from dashboard.pages.layout import Viewer, badge, duration, page, repo_path, when
from dashboard.settings import WINDOWS
from orchestrator.store import HostRecord, JobRow, RepoSummary


def order(summaries: Sequence[RepoSummary]) -> list[RepoSummary]:
    """Lowest pass rate first (the ones to look at), those with nothing judged last; then by name."""
    return sorted(summaries, key=lambda s: (s.pass_rate is None, s.pass_rate or 0.0, s.forge, s.repo))


def _rate(summary: RepoSummary) -> str:
    rate = summary.pass_rate
    if rate is None:
        return '<span class="muted">-</span>'
    percent = rate * 100
    level = "good" if percent >= 90 else "warn" if percent >= 60 else "bad"
    return f'<span class="rate rate-{level}">{percent:.0f}%</span>'


def _hosts(hosts: Sequence[HostRecord]) -> str:
    if not hosts:
        return '<p class="muted">No host has registered yet.</p>'
    items = []
    for host in hosts:
        status = "down" if not host.alive else "draining" if host.draining else "up"
        items.append(
            f'<li class="host host-{status}"><span class="name">{e(host.name)}</span>'
            f' <meter min="0" max="{max(host.capacity, 1)}" value="{host.running}"'
            f' aria-label="{e(host.name)}: {host.running} of {host.capacity} slots in use"></meter>'
            f' <span class="use">{host.running}/{host.capacity}</span> <span class="status">{status}</span></li>')
    return f'<ul class="hosts">{"".join(items)}</ul>'


def _failure(job: JobRow, now: datetime) -> str:
    anchor = f"#L{job.note.line_seq}" if job.note and job.note.line_seq else ""
    step = f' in step <span class="step-name">{e(job.note.step_name)}</span>' if job.note and job.note.step_name else ""
    line = f'<code class="line">{e(job.note.line)}</code>' if job.note and job.note.line else (
        f'<span class="muted">{e(job.reason.splitlines()[0] if job.reason else "no failing line recorded")}</span>')
    return (f'<li>{badge(job.state)} <a href="/jobs/{e(job.job_id)}{anchor}">{e(job.name)}</a>{step}'
            f' <span class="muted">({e(job.sha[:10])}, {when(job.finished_at, now)})</span><br>{line}</li>')


def render(summaries: Sequence[RepoSummary], failures: Mapping[tuple[str, str], Sequence[JobRow]],
           hosts: Sequence[HostRecord], days: int, viewer: Viewer, now: datetime) -> str:
    current = ' aria-current="true" class="on"'
    windows = " ".join(f'<a href="/?days={d}"{current if d == days else ""}>{d} day{"s" if d > 1 else ""}</a>'
                       for d in WINDOWS)
    rows = []
    for s in order(summaries):
        path = repo_path(s.forge, s.repo)
        rows.append(
            f'<tr><th scope="row"><a href="{e(path)}">{e(s.repo)}</a> '
            f'<span class="forge">{e(s.forge or "-")}</span></th>'
            f'<td class="num">{_rate(s)}</td><td class="num">{s.succeeded}</td><td class="num">{s.failed}</td>'
            f'<td class="num">{s.errored}</td><td class="num">{s.cancelled}</td>'
            f'<td class="num">{s.running}</td><td class="num">{s.queued}</td>'
            f'<td class="num">{duration(s.queue_time.quantile(0.5))}</td>'
            f'<td class="num">{duration(s.run_time.quantile(0.5))}</td></tr>')
    table = (
        '<div class="scroll"><table class="repos"><caption>Repositories, lowest pass rate first</caption>'
        '<thead><tr><th scope="col">Repository</th>'
        '<th scope="col" title="succeeded / (succeeded + failed)">Pass rate</th>'
        '<th scope="col">Succeeded</th><th scope="col">Failed</th><th scope="col">Errored</th>'
        '<th scope="col">Cancelled</th><th scope="col">Running</th><th scope="col">Queued</th>'
        '<th scope="col" title="queued to running, estimated from a histogram">Median queue</th>'
        '<th scope="col" title="running to finished, estimated from a histogram">Median run</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        if rows else f'<p class="muted">No job finished in the last {days} days and none is waiting.</p>')
    failure_blocks = []
    for s in order(summaries):
        found = failures.get((s.forge, s.repo), ())
        if found:
            items = "".join(_failure(job, now) for job in found)
            failure_blocks.append(f'<section class="fails" aria-label="Latest failures of {e(s.repo)}">'
                                  f'<h3><a href="{e(repo_path(s.forge, s.repo))}">{e(s.repo)}</a></h3>'
                                  f'<ul>{items}</ul></section>')
    body = f"""<h1>CI health</h1>
<nav class="windows" aria-label="Window">Window: {windows} <span class="muted">(UTC days)</span></nav>
<section aria-labelledby="hosts-h"><h2 id="hosts-h">Hosts</h2>{_hosts(hosts)}</section>
<section aria-labelledby="repos-h"><h2 id="repos-h">Repositories</h2>{table}</section>
<section aria-labelledby="fails-h"><h2 id="fails-h">Latest failures</h2>
{"".join(failure_blocks) or '<p class="muted">No failures in this window.</p>'}</section>"""
    return page("CI health", body, viewer)
