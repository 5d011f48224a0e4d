"""``ciadm``: operate a Solstice CI cluster (a thin AdminService client).

Every command talks to one orchestrator's AdminService (``--orchestrator``
or ``$SOLSTICE_ORCHESTRATOR``: a socket path or HOST:PORT over TLS; by
default the Unix socket of the node on this host, see ``target``), with a
token when one is given (``--token``, ``$SOLSTICE_TOKEN``,
``~/.config/solstice/ciadm.yaml``; none is needed on the local socket as
the node's own user or root), prints an aligned table
by default and JSON with ``--json``, and turns every failure - nothing
listening, an unknown job, a refused request - into one ``ERROR:`` line.
Exit status: 0 success, 1 error, 2 usage error, 3 orchestrator unreachable;
``logs --follow`` exits 0 only when the job succeeded (1 otherwise, also for
a job cancelled before it ran, whose log is empty: its final state is the answer).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from ciadm import format as fmt
from ciadm.client import AdminClient
from ciadm.session import EXIT_UNREACHABLE, F, Session
from ciadm.session import echo_json as _echo_json
from ciadm.session import json_option as _json_option
from ciadm.session import run as _run
from ciadm.session import show as _show
from ciadm.target import ENV_ORCHESTRATOR, config_path, load_settings, with_flags
from common.cli import fail, run_cli
from common.durations import parse_duration
from common.errors import DurationError
from common.escape import escape_block
from common.logtext import SYSTEM_PREFIX, TextBlocks
from common.rpc import admin_pb2, jobs_pb2
from common.tables import iso_time

__all__ = ["EXIT_UNREACHABLE", "cli", "main"]


def _job_command(epilog: str, *options: Callable[[F], F]) -> Callable[[Callable[..., Any]], click.Command]:
    """A command on one job: ``JOB`` argument, ``options``, ``--json``, the context first."""

    def wrap(func: Callable[..., Any]) -> click.Command:
        func = click.pass_context(func)
        func = _json_option(func)
        for option in reversed(options):
            func = option(func)
        func = click.argument("job_id", metavar="JOB")(func)
        return cli.command(epilog=epilog)(func)

    return wrap


def _host_command(epilog: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A command on one host: ``HOST`` argument, ``--json``, the context first."""

    def wrap(func: Callable[..., Any]) -> click.Command:
        func = click.argument("host")(_json_option(click.pass_context(func)))
        return cli.command(epilog=epilog)(func)

    return wrap


@click.group(
    epilog=f"""\b
Examples:
  ciadm submit .solstice/workflow.kdl
  ciadm list --state running
  ciadm logs --follow job-0f3c...
  ciadm --orchestrator /var/lib/solstice/admin.sock hosts --json
  SOLSTICE_TOKEN=solstice_... ciadm --orchestrator ci.example.org:50052 --tls-ca ca.crt list

\b
Where: on the host of `solstice serve` nothing is needed (its socket in
$SOLSTICE_DATA_DIR or ~/.local/state/solstice is found, and its own user and
root need no token). Elsewhere: --orchestrator / ${ENV_ORCHESTRATOR} (a socket
path, unix:PATH, or HOST:PORT over TLS) and a token: --token, $SOLSTICE_TOKEN,
or 'token:' in {config_path()} (mode 0600), which may also hold orchestrator,
tls_ca, tls_cert and tls_key.

\b
Exit status: 0 success, 1 error (unknown job, refused request or token; for
logs --follow, a job that ended without succeeding), 2 usage error, 3
orchestrator unreachable.
"""
)
@click.option("--orchestrator", default=None, metavar="SOCKET|HOST:PORT",
              help=f"AdminService: a Unix socket path (unix:PATH) or HOST:PORT over TLS (also ${ENV_ORCHESTRATOR}).")
@click.option("--token", default=None, metavar="TOKEN", help="Operator token (also $SOLSTICE_TOKEN).")
@click.option("--tls-ca", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CA certificate to trust for HOST:PORT (also $SOLSTICE_TLS_CA; default: the system's).")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Client certificate for mutual TLS (also $SOLSTICE_TLS_CERT).")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Its private key (also $SOLSTICE_TLS_KEY).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for each answer.")
@click.pass_context
def cli(ctx: click.Context, orchestrator: str | None, token: str | None, tls_ca: Path | None,
        tls_cert: Path | None, tls_key: Path | None, timeout: float) -> None:
    """Operate Solstice CI: submit, list, follow, cancel and retry jobs; drain hosts; gc; tokens; secrets.

    Talks to an orchestrator's AdminService: the local node's socket, or
    $SOLSTICE_ORCHESTRATOR.
    """
    settings = with_flags(load_settings(), orchestrator=orchestrator, token=token, tls_ca=tls_ca,
                          tls_cert=tls_cert, tls_key=tls_key)
    ctx.obj = Session(settings, timeout)


@cli.command(
    epilog="""\b
Examples:
  ciadm submit                                  # .solstice/workflow.kdl at HEAD of this checkout
  ciadm submit ci/nightly.kdl --job build
  ciadm submit --job package --follow           # then its log until it ends; exit 0 if it succeeded
  ciadm submit --repo ~/src/app --ref main      # the workflow committed there
  ciadm submit --repo https://git.example.org/me/app.git --ref refs/heads/main
  ciadm submit --repo https://git.example.org/me/app.git --sha 3f2a...  --json
"""
)
@click.argument("workflow", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--repo", metavar="PATH|URL", help="Git checkout or clone URL to build [default: the checkout here].")
@click.option("--ref", metavar="REF", help="Branch or refs/... to build [default: HEAD].")
@click.option("--sha", metavar="SHA", help="Exact commit to build (beats --ref for the commit).")
@click.option("--job", "jobs", multiple=True, metavar="ID", help="Only this job (and what it needs); repeatable.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Set a variable in every job; repeatable.")
@click.option("--follow", "-f", is_flag=True,
              help="Then print the log of the job asked for (the first --job) until it ends, as logs --follow.")
@_json_option
@click.pass_context
def submit(ctx: click.Context, workflow: Path | None, repo: str | None, ref: str | None, sha: str | None,
           jobs: tuple[str, ...], env: tuple[str, ...], follow: bool, as_json: bool) -> None:
    """Queue one run of a workflow at an exact commit; prints the queued jobs.

    WORKFLOW is a workflow file; without it the workflow is read from
    .solstice/workflow.kdl at the commit being built. The commit comes from
    a local checkout (its HEAD, --ref or --sha) or a remote --repo URL.
    """
    from ciadm.submit import resolve_target, submission
    from cidev.run_requests import SelectionError, parse_assignments

    try:
        variables = parse_assignments(env, "--env")
    except SelectionError as err:
        fail(str(err), 2)
    target = asyncio.run(resolve_target(workflow, repo, ref, sha))
    try:
        requests = submission(target, jobs, variables)
    except SelectionError as err:
        fail(str(err), 2)
    queued = _run(ctx, lambda client: client.submit(requests))
    if as_json:
        _echo_json([fmt.job_json(job) for job in queued])
        return
    run_id = queued[0].run_id if queued else ""
    click.echo(f"submitted {len(queued)} job{'s' * (len(queued) != 1)} of run {run_id} "
               f"at {target.checkout.sha[:12]} of {target.checkout.repo}")
    for line in fmt.jobs_table(queued):
        click.echo(line)
    if not queued:
        return
    # The job asked for (the first --job), not whichever the workflow lists first.
    shown = next((job for key in jobs for job in queued if job.key == key), queued[0])
    if not follow:
        click.echo(f"follow with: ciadm logs --follow {shown.job_id}")
        return
    click.echo(f"following {shown.key} ({shown.job_id}):")
    _follow_log(ctx, shown.job_id, from_sequence=1, as_json=False, escape=sys.stdout.isatty())


@_job_command(
    epilog="""\b
Examples:
  ciadm status job-0f3c...
  ciadm status --json job-0f3c... | jq .state
"""
)
def status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job: state, reason, attempt, host, commit, timings and steps."""
    job = _run(ctx, lambda client: client.get(job_id))
    _show(as_json, fmt.job_json(job), fmt.job_details(job))


@cli.command(
    name="list",
    epilog="""\b
Examples:
  ciadm list
  ciadm list --state failed --limit 20
  ciadm list --repo me/app --ref refs/heads/main
  ciadm list --host illumos-a --json
"""
)
@click.option("--repo", help="Only jobs of this repository.")
@click.option("--ref", help="Only jobs of this ref (refs/heads/main).")
@click.option("--state", type=click.Choice(fmt.STATES), help="Only jobs in this state.")
@click.option("--host", help="Only jobs on this host.")
@click.option("--run", "run_id", metavar="RUN", help="Only the jobs of this workflow run.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True, help="At most this many.")
@_json_option
@click.pass_context
def list_jobs(ctx: click.Context, repo: str | None, ref: str | None, state: str | None, host: str | None,
              run_id: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first, optionally filtered."""
    request = admin_pb2.ListJobsRequest(
        repo=repo or "", ref=ref or "", host=host or "", run_id=run_id or "", limit=limit,
        state=fmt.state_value(state) if state else jobs_pb2.JOB_STATE_UNSPECIFIED,
    )
    jobs = _run(ctx, lambda client: client.list(request))
    _show(as_json, [fmt.job_json(job) for job in jobs], fmt.jobs_table(jobs) if jobs else [], empty="no jobs")


@_job_command(
    """\b
Examples:
  ciadm logs job-0f3c...
  ciadm logs --follow job-0f3c...      # until the job ends; exit 0 if it succeeded
  ciadm logs --attempt 1 job-0f3c...   # an earlier attempt (a retry, or a requeue after a lost host)
  ciadm logs --json job-0f3c... | jq -r .text

\b
Lines Solstice adds (checkout, step banners) start with "## ". --follow
ends with the job's final state on stderr ("job <id> <state>: <reason>"),
also for a job cancelled before it ever ran; exit 0 only if it succeeded.
Any node prints any job's log. The log of an attempt whose host was lost
ends with a "## " line saying so, after the last line that was saved.
A dropped connection is resumed where it stopped: no line is missed or
printed twice.

\b
On a terminal, control characters the job printed are shown escaped
(ESC as \\x1b, CR as \\x0d, ...) so they cannot move the cursor, retitle
the window or write the clipboard; colours pass. Piped or redirected, the
bytes are printed as the job wrote them; --raw prints them so everywhere.
""",
    click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends."),
    click.option("--from", "from_sequence", type=click.IntRange(1), default=1, help="First line number to print."),
    click.option("--attempt", type=click.IntRange(1), default=None,
                 help="Which attempt's log [default: the current one]."),
    click.option("--raw", is_flag=True, help="Print control characters as they are, also on a terminal."),
)
def logs(ctx: click.Context, job_id: str, follow: bool, from_sequence: int, attempt: int | None, raw: bool,
         as_json: bool) -> None:
    """Print a job's log (its current attempt, or --attempt N); --follow streams it live."""
    escape = not raw and sys.stdout.isatty()
    if follow:
        _follow_log(ctx, job_id, from_sequence, as_json, escape, attempt or 0)
    else:
        _run(ctx, _log_printer(job_id, False, from_sequence, as_json, escape, attempt or 0))


def _follow_log(ctx: click.Context, job_id: str, from_sequence: int, as_json: bool, escape: bool,
                attempt: int = 0) -> None:
    """Print the log until the job ends, then its final state on stderr; exit 1 unless it succeeded."""
    printer = _log_printer(job_id, True, from_sequence, as_json, escape, attempt)

    async def work(client: AdminClient) -> admin_pb2.JobInfo:
        await printer(client)  # an attempt that ended without a line reads as an empty log
        return await _settled(client, job_id)

    job = _run(ctx, work)
    reason = f": {job.reason}" if job.reason else ""
    click.echo(f"job {job.job_id} {fmt.state_name(job.state)}{reason}", err=True)
    if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        sys.exit(1)


def _log_printer(job_id: str, follow: bool, from_sequence: int, as_json: bool,
                 escape: bool, attempt: int = 0) -> Callable[[AdminClient], Awaitable[None]]:
    """Prints a job's log a page at a time (system lines with "## "; control bytes escaped
    with ``escape``); with ``follow`` until the log ends."""

    async def work(client: AdminClient) -> None:
        out = sys.stdout.buffer
        text = TextBlocks()
        async for page in client.tail_logs(job_id, follow=follow, from_sequence=from_sequence, attempt=attempt):
            if page.keepalive:
                # Nothing new for a while: end the last line now rather than hold it back in
                # case its rest comes (a long line split in transit); grep on the other side waits.
                out.write(text.finish())
            elif as_json:
                out.write(fmt.page_json_lines(page))
            else:
                block = text.page(page)
                if page.ended:
                    block += text.line(SYSTEM_PREFIX + page.ended.encode())
                out.write(escape_block(block) if escape else block)
            out.flush()
        out.write(text.finish())
        out.flush()

    return work


TERMINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED,
            jobs_pb2.JOB_STATE_ERRORED}
SETTLE_SECONDS = 30.0


async def _settled(client: AdminClient, job_id: str) -> admin_pb2.JobInfo:
    """The job once its state is final: the log ends when the runner is done, the record a moment later."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    job = await client.get(job_id)
    while job.state not in TERMINAL and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        job = await client.get(job_id)
    return job


def _show_changed_job(job: admin_pb2.JobInfo, verb: str, as_json: bool) -> None:
    reason = f" ({job.reason})" if job.reason else ""
    _show(as_json, fmt.job_json(job),
          [f"job {job.job_id} {verb}: attempt {job.attempt} is {fmt.state_name(job.state)}{reason}"])


@_job_command(
    """\b
Examples:
  ciadm cancel job-0f3c...
  ciadm cancel job-0f3c... --reason "superseded by #42"
""",
    click.option("--reason", default="cancelled with ciadm", show_default=True, help="Recorded as the job's reason."),
)
def cancel(ctx: click.Context, job_id: str, reason: str, as_json: bool) -> None:
    """Cancel a job: a queued job never starts, a running one is stopped in its VM."""
    _show_changed_job(_run(ctx, lambda client: client.cancel(job_id, reason)), "cancelled", as_json)


@_job_command(
    """\b
Examples:
  ciadm retry job-0f3c...
  ciadm retry --json job-0f3c... | jq .attempt
"""
)
def retry(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Run a finished job again as a new attempt (same commit, same steps)."""
    _show_changed_job(_run(ctx, lambda client: client.retry(job_id)), "retried", as_json)


@cli.command(
    epilog="""\b
Examples:
  ciadm hosts
  ciadm hosts --json | jq '.[] | select(.alive | not)'
"""
)
@_json_option
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """List orchestrator hosts: labels, capacity, running jobs, heartbeat age, draining."""
    found = _run(ctx, lambda client: client.hosts())
    _show(as_json, [fmt.host_json(h) for h in found], fmt.hosts_table(found) if found else [], empty="no hosts")


@cli.command(
    epilog="""\b
Examples:
  ciadm schedules
  ciadm schedules --json | jq '.[] | select(.last_error)'
"""
)
@_json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the workflows' schedules (on schedule=... branch=...): last and next run, last error.

    The forge integration keeps them: a solstice serve node answers; in a
    cluster run solstice-integration schedules next to the integration.
    """
    found = _run(ctx, lambda client: client.schedules())
    _show(as_json, [fmt.schedule_json(s) for s in found], fmt.schedules_table(found) if found else [],
          empty="no schedules")


def _set_draining(ctx: click.Context, host: str, as_json: bool, undrain: bool) -> None:
    info = _run(ctx, lambda client: client.drain(host, undrain=undrain))
    _show(as_json, fmt.host_json(info),
          [f"host {info.name}: {'draining' if info.draining else 'taking work'}, {info.running} running"])


@_host_command(
    """\b
Examples:
  ciadm drain illumos-a          # finishes its running jobs, takes no new ones
  ciadm hosts                    # watch RUNNING drop to 0
"""
)
def drain(ctx: click.Context, host: str, as_json: bool) -> None:
    """Stop a host taking new jobs; its running jobs finish."""
    _set_draining(ctx, host, as_json, undrain=False)


@_host_command(
    """\b
Examples:
  ciadm undrain illumos-a
"""
)
def undrain(ctx: click.Context, host: str, as_json: bool) -> None:
    """Let a drained host take jobs again."""
    _set_draining(ctx, host, as_json, undrain=True)


@cli.command(
    epilog="""\b
Examples:
  ciadm gc --dry-run                  # what a retention pass would delete now
  ciadm gc --dry-run --older-than 30d --json
  ciadm gc                            # delete it now (every node also does so every logs.gc_interval)

\b
A job goes once its last attempt finished longer ago than the age: its
record, attempts and steps, its archived logs and its log files on the node
answering. Jobs still queued or running are never touched. Needs the admin role.
"""
)
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--older-than", "older_than", metavar="DURATION", default=None,
              help="Age instead of the node's logs.retention (90d by default), e.g. 30d, 12h.")
@_json_option
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, older_than: str | None, as_json: bool) -> None:
    """Delete job records and logs older than the retention age (--dry-run: only show them)."""
    try:
        seconds = parse_duration(older_than) if older_than is not None else 0.0
    except DurationError as err:
        fail(f"--older-than: {err}", 2)
    report = _run(ctx, lambda client: client.collect_garbage(dry_run, seconds))
    verb = "would delete" if report.dry_run else "deleted"
    size = f"{report.log_bytes / 1e6:.1f} MB" if report.log_bytes >= 100_000 else f"{report.log_bytes} bytes"
    cutoff = iso_time(report.cutoff) or "-"
    lines = [f"{verb} {report.jobs} job{'s' * (report.jobs != 1)} and {report.logs} "
             f"log{'s' * (report.logs != 1)} ({size}) that finished before {cutoff}"]
    lines.extend(f"  {job_id}" for job_id in report.job_ids)
    if report.jobs > len(report.job_ids):
        lines.append(f"  ... and {report.jobs - len(report.job_ids)} more")
    _show(as_json, {"dry_run": report.dry_run, "cutoff": cutoff, "jobs": report.jobs, "logs": report.logs,
                    "log_bytes": report.log_bytes, "job_ids": list(report.job_ids)}, lines)


import ciadm.artifacts  # noqa: E402,F401 - registers the `artifacts` command on `cli`
import ciadm.greenness  # noqa: E402,F401 - registers `last-green` and `hooks` on `cli`
import ciadm.secrets  # noqa: E402,F401 - registers the `secret` command group on `cli`
from ciadm.tokens import token  # noqa: E402 - a group of its own, added to this one

cli.add_command(token)
main = run_cli(cli)
