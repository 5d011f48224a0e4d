"""``/jobs/<id>``: the job's header, its steps with their log inline, live while it runs.

The page is whole without scripts (every step is a ``<details>``; the failing
one, or the running one, is open). With the script it follows the log over
server-sent events, updates the header and the steps, and searches the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from common.logbatch import JOB_STEP, LogLine
from common.rpc import jobs_pb2
from common.workflow.limits import show_bytes
from dashboard.ansi import escape as e
from dashboard.links import ForgeLinks
from dashboard.logview import LineRenderer
from dashboard.pages.layout import Viewer, badge, crumb, duration, page, ref_name, repo_path, when
from orchestrator.store import AttemptRecord, FailureNote, JobRecord, JobState, StepRecord, StepState

INLINE_LINES = 5000  # lines a page shows at most (the raw log has them all)
NOTICES = {  # ?done=... after a button: fixed texts only, nothing from the URL is shown
    "cancelled": "Cancel requested.",
    "retried": "A new attempt is queued.",
}


@dataclass(frozen=True)
class JobView:
    """Everything the job page shows of one attempt (read by the app)."""

    job: JobRecord
    attempt: AttemptRecord
    attempts: Sequence[AttemptRecord]
    steps: Sequence[StepRecord]
    note: FailureNote | None
    run_jobs: Sequence[JobRecord]
    driver: str
    lines: Sequence[LogLine]
    highest: int  # the highest log sequence when read
    log_problem: str  # why there is no log to show ("" when there is)
    first: int  # the first sequence asked for
    query: str  # ?q= search, "" for none
    artifacts: Sequence[jobs_pb2.ArtifactInfo] = ()  # of this attempt (on this node)

    @property
    def current(self) -> bool:
        return self.attempt.attempt == self.job.attempt

    @property
    def tail(self) -> bool:
        """The page ends at the end of the log (so it may follow it live)."""
        return not self.lines or self.lines[-1].sequence >= self.highest


def source_text(request: jobs_pb2.JobRequest) -> str:
    """Who made the job: a forge webhook, or an operator through AdminService (not reported to a forge)."""
    if request.source == jobs_pb2.JOB_SOURCE_ADMIN:
        return f"submitted by operator {request.submitted_by or '?'} through AdminService (not reported to a forge)"
    if request.source == jobs_pb2.JOB_SOURCE_FORGE:
        return f"forge webhook ({request.origin or request.checkout.forge})"
    return request.origin


def _span(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def head(view: JobView, links: ForgeLinks, viewer: Viewer, now: datetime) -> str:
    """The header: state, where the code came from, attempts, timings, the buttons. Replaced live."""
    job, attempt = view.job, view.attempt
    checkout = job.request.checkout
    forge = checkout.forge
    repo_link = repo_path(forge, job.repo)
    commit_url = links.commit(forge, job.repo, job.sha)
    commit = (f'<a href="{e(commit_url)}" rel="noreferrer"><code>{e(job.sha)}</code></a>' if commit_url
              else f"<code>{e(job.sha)}</code>")
    ref = f'<a href="{e(repo_link)}?{e(urlencode({"ref": job.ref}))}">{e(ref_name(job.ref))}</a>'
    if checkout.pull_request:
        ref += f' (<a href="{e(repo_link)}/pull/{checkout.pull_request}">pull request #{checkout.pull_request}</a>)'
    attempts = " ".join(
        (f'<span aria-current="page">{a.attempt} {badge(a.state)}</span>' if a.attempt == attempt.attempt else
         f'<a href="/jobs/{e(job.job_id)}?attempt={a.attempt}">{a.attempt}</a> {badge(a.state)}')
        for a in view.attempts)
    began = attempt.running_at or attempt.started_at
    queue = _span(attempt.queued_at, attempt.running_at or (now if attempt.state is JobState.QUEUED else None))
    run = _span(began, attempt.finished_at or (now if began and not attempt.state.terminal else None))
    facts = [
        ("Repository", f'<a href="{e(repo_link)}">{e(job.repo)}</a> <span class="forge">{e(forge or "-")}</span>'),
        ("Ref", ref), ("Commit", commit), ("Trigger", e(source_text(job.request)) or "-"),
        ("Attempts", attempts), ("Runs on", e(job.runs_on)), ("Host", e(attempt.host) or "(not claimed yet)"),
        ("Driver", e(view.driver) or "-"), ("Queued", when(attempt.queued_at, now)),
        ("Started", when(attempt.started_at, now)), ("Finished", when(attempt.finished_at, now)),
        ("Waited", duration(queue)), ("Ran", duration(run)),  # queued -> running, running -> finished
    ]
    if attempt.reason:
        facts.append(("Reason", f'<pre class="reason">{e(attempt.reason)}</pre>'))
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (f'<h1><span class="job-name">{e(job.name or job.key)}</span> {badge(attempt.state)}'
            f' <small class="muted">attempt {attempt.attempt}</small></h1><dl class="facts">{dl}</dl>'
            f"{_buttons(view, viewer)}")


def _buttons(view: JobView, viewer: Viewer) -> str:
    from orchestrator.operators import Role

    if viewer.principal is None or not viewer.principal.may(Role.OPERATE):
        return ""
    job = view.job
    hidden = f'<input type="hidden" name="csrf" value="{e(viewer.csrf)}">'
    if not job.terminal:
        return (f'<form method="post" action="/jobs/{e(job.job_id)}/cancel" class="actions">{hidden}'
                '<button type="submit" class="danger" id="cancel">Cancel job</button></form>')
    return (f'<form method="post" action="/jobs/{e(job.job_id)}/retry" class="actions">{hidden}'
            '<button type="submit" id="retry">Re-run job</button></form>')


def step_label(index: int, name: str, record: StepRecord | None, running: bool) -> str:
    """A step's ``<summary>``: state, number and name, duration, exit code. Replaced live."""
    if index == JOB_STEP:
        return f'{badge("running" if running else "succeeded", "setup")} <span class="step-name">Set up job</span>'
    state: StepState | str = record.state if record is not None else ("running" if running else "queued")
    extra = ""
    if record is not None and record.state.final:
        code = f" · exit {record.exit_code}" if record.state in (StepState.SUCCEEDED, StepState.FAILED) else ""
        extra = f' <span class="muted">{duration(record.duration)}{code}</span>'
    return f'{badge(state)} <span class="step-name">{index + 1}. {e(name)}</span>{extra}'


def step_names(view: JobView) -> list[tuple[int, str]]:
    """The attempt's steps: every step of the request, then any other the runner reported."""
    names = {i: step.name or f"step {i + 1}" for i, step in enumerate(view.job.request.steps)}
    for record in view.steps:
        names.setdefault(record.index, record.name)
    for line in view.lines:
        if line.step != JOB_STEP:
            names.setdefault(line.step, f"step {line.step + 1}")
    return sorted(names.items())


def steps_state(view: JobView) -> list[tuple[int, str, str]]:
    """(index, state name, summary HTML) of the setup group and each step, for the page and live updates."""
    records = {s.index: s for s in view.steps}
    live = not view.attempt.state.terminal
    # The running step: the first without a final state, once the job runs.
    running = next((i for i, _ in step_names(view) if i not in records or not records[i].state.final), None) \
        if live and view.attempt.state is JobState.RUNNING else None
    setup_running = live and not records and view.attempt.state is not JobState.QUEUED
    out = [(JOB_STEP, "running" if setup_running else "done", step_label(JOB_STEP, "", None, setup_running))]
    for index, name in step_names(view):
        record = records.get(index)
        state = record.state.name.lower() if record is not None else ("running" if index == running else "queued")
        out.append((index, state, step_label(index, name, record, index == running)))
    return out


def _log(view: JobView) -> str:
    groups: dict[int, list[str]] = {}
    for step, html in LineRenderer().groups(view.lines):
        groups.setdefault(step, []).append(html)
    states = steps_state(view)
    failing = {i for i, state, _ in states if state == "failed"}
    live = [i for i, state, _ in states if state == "running"]
    opened = failing or set(live[-1:]) or ({view.note.step} if view.note else set())
    blocks = []
    for index, state, label in states:
        is_open = " open" if index in opened or view.query else ""
        blocks.append(f'<details class="step" id="step-{index}" data-step="{index}" data-state="{e(state)}"{is_open}>'
                      f'<summary>{label}</summary><ol class="log">{"".join(groups.get(index, []))}</ol></details>')
    return "".join(blocks)


def artifacts_section(view: JobView) -> str:
    """The attempt's artifacts, each file a download link (``/jobs/<id>/artifacts/<name>/<path>``)."""
    if not view.artifacts:
        return ""
    items = []
    for info in view.artifacts:
        base = f"/jobs/{quote(view.job.job_id)}/artifacts/{quote(info.name)}/"
        files = "".join(
            f'<li><a href="{e(base + quote(f.path))}?attempt={view.attempt.attempt}" download>{e(f.path)}</a>'
            f' <span class="muted">{e(show_bytes(f.size))}</span></li>' for f in info.file_list)
        items.append(f'<li><strong>{e(info.name)}</strong> <span class="muted">{info.files} files, '
                     f"{e(show_bytes(info.bytes))}</span><ul>{files}</ul></li>")
    return (f'<section id="artifacts" aria-labelledby="artifacts-h"><h2 id="artifacts-h">Artifacts</h2>'
            f'<ul class="artifacts">{"".join(items)}</ul></section>')


def render(view: JobView, links: ForgeLinks, viewer: Viewer, now: datetime, notice: str = "") -> str:
    job = view.job
    raw = f"/jobs/{e(job.job_id)}/log?attempt={view.attempt.attempt}"
    first_shown = view.lines[0].sequence if view.lines else view.first
    earlier = ""
    if first_shown > 1 and view.lines:
        back = urlencode({"attempt": view.attempt.attempt, "from": max(1, first_shown - INLINE_LINES)})
        earlier = (f'<p class="earlier"><a href="/jobs/{e(job.job_id)}?{e(back)}">Show earlier lines</a>'
                   f" (this page starts at line {first_shown})</p>")
    later = ""
    if not view.tail:
        on = urlencode({"attempt": view.attempt.attempt, "from": view.lines[-1].sequence + 1})
        later = f'<p class="earlier"><a href="/jobs/{e(job.job_id)}?{e(on)}">Show later lines</a></p>'
    follow = view.current and view.tail and not view.query and not view.attempt.state.terminal
    last = view.lines[-1].sequence if view.lines else (view.first - 1 if view.first > 0 else 0)
    problem = f'<p class="notice" id="log-problem">{e(view.log_problem)}</p>' if view.log_problem else ""
    searched = (f'<p class="notice">Lines matching <mark>{e(view.query)}</mark> among lines {view.first} and after'
                f' ({len(view.lines)} found). <a href="/jobs/{e(job.job_id)}?attempt={view.attempt.attempt}">'
                "Show the whole log</a></p>" if view.query else "")
    others = "".join(
        f'<li>{badge(other.state)} <a href="/jobs/{e(other.job_id)}">{e(other.name or other.key)}</a></li>'
        for other in view.run_jobs if other.job_id != job.job_id)
    run = (f'<section aria-labelledby="run-h"><h2 id="run-h">Other jobs of this run</h2><ul class="jobs">{others}'
           "</ul></section>" if others else "")
    flash = f'<p class="flash" role="status">{e(NOTICES[notice])}</p>' if notice in NOTICES else ""
    body = f"""{flash}<section id="job-head" aria-label="Job">{head(view, links, viewer, now)}</section>
<section id="log-section" aria-labelledby="log-h">
<div class="log-tools"><h2 id="log-h">Log</h2>
<form role="search" method="get" class="log-search" id="log-search"><label for="q">Search the log</label>
<input type="hidden" name="attempt" value="{view.attempt.attempt}">
<input id="q" name="q" type="search" value="{e(view.query)}" autocomplete="off">
<button type="submit">Find</button> <span id="search-count" aria-live="polite"></span></form>
<a href="{raw}">raw log</a> <span id="live-status" role="status" aria-live="polite"></span></div>
{problem}{searched}{earlier}
<div id="log" data-job="{e(job.job_id)}" data-attempt="{view.attempt.attempt}" data-last="{last}"
 data-follow="{'1' if follow else ''}">{_log(view)}</div>
{later}
</section>
{artifacts_section(view)}
{run}"""
    base = repo_path(job.request.checkout.forge, job.repo)
    crumbs = crumb((job.repo, base), (f"{job.name or job.key} #{view.attempt.attempt}", f"/jobs/{job.job_id}"))
    return page(f"{job.name or job.key} - {view.attempt.state.name.lower()}", body, viewer, crumbs=crumbs,
                live=follow)
