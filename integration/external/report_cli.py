"""``solstice-report``: a downstream CI job tells the relay it started, and how it ended.

Runs in a GitHub Actions job started by the relay's ``repository_dispatch``
(the job needs ``permissions: id-token: write``): it reads the dispatch from
``$GITHUB_EVENT_PATH``, gets an OIDC token for the server's audience from
the Actions runtime, and posts ``in_progress`` or ``completed`` (with the
test counts of JUnit XML files) to the dispatch's ``results_url``.

Exit status follows the server's answer: accepted -> 0; rejected (4xx: the
report or the setup is wrong) -> 1, so the step fails and someone fixes it;
unavailable (5xx, or the server cannot be reached) -> 0 with a warning, so
the server's trouble never fails the downstream's CI.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from common.cli import run_cli
from common.errors import SolsticeError
from integration.external.junit import JUnitUnreadable, junit_files, summarize
from integration.external.records import SuiteSummary

CONCLUSIONS = ("success", "failure", "cancelled", "timed_out", "skipped", "neutral")
RESULTS_PATH = "/api/v1/results"
TIMEOUT = 30.0


class ReportSetupError(SolsticeError):
    """What the step needs is missing (no dispatch, no OIDC token): the step fails."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0 when the server could not be reached
    doc: dict[str, Any]
    retry_after: float


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dispatch(event_path: str | None) -> dict[str, Any]:
    if not event_path:
        raise ReportSetupError("no dispatch to report on: GITHUB_EVENT_PATH is not set (give --event FILE)")
    try:
        event = json.loads(Path(event_path).read_text())
    except (OSError, ValueError) as err:
        raise ReportSetupError(f"cannot read the dispatch {event_path}: {err}") from err
    payload = event.get("client_payload") if isinstance(event, dict) else None
    if not isinstance(payload, dict) or payload.get("schema_version") != 1:
        raise ReportSetupError(f"{event_path} is not a Solstice dispatch (no client_payload with schema_version 1): "
                               "run this in a workflow started by the relay's repository_dispatch")
    return payload


def _oidc_token(audience: str) -> str:
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    request_token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not request_token:
        raise ReportSetupError("no OIDC token can be had: give the job 'permissions: id-token: write'")
    separator = "&" if "?" in url else "?"
    request = urllib.request.Request(f"{url}{separator}audience={urllib.parse.quote(audience, safe='')}",
                                     headers={"Authorization": f"bearer {request_token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 (the runtime's own URL)
            value = json.loads(answer.read()).get("value")
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise ReportSetupError(f"the Actions runtime gave no OIDC token: {err}") from err
    if not isinstance(value, str) or not value:
        raise ReportSetupError("the Actions runtime answered without a token")
    return value


def _post(url: str, token: str, body: dict[str, Any]) -> Answer:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": "solstice-report"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 (https in the dispatch)
            return Answer(answer.status, json.loads(answer.read() or b"{}"), 0.0)
    except urllib.error.HTTPError as err:
        try:
            doc = json.loads(err.read() or b"{}")
        except ValueError:
            doc = {}
        retry = err.headers.get("Retry-After", "") if err.headers else ""
        return Answer(err.code, doc if isinstance(doc, dict) else {}, float(retry) if retry.isdigit() else 0.0)
    except (urllib.error.URLError, OSError, ValueError) as err:
        return Answer(0, {"detail": f"the results API could not be reached: {err}"}, 0.0)


def _tests(patterns: tuple[str, ...]) -> SuiteSummary | None:
    if not patterns:
        return None
    files = junit_files(patterns)
    if not files:
        click.echo(f"::warning::solstice-report: no JUnit file matches {' '.join(patterns)}; reporting no counts")
        return None
    try:
        return summarize(files)
    except JUnitUnreadable as err:
        click.echo(f"::warning::solstice-report: {err}; reporting no counts")
        return None


def build_report(payload: dict[str, Any], status: str, conclusion: str | None, job_id: str, job_name: str,
                 run_id: str, run_attempt: int, tests: SuiteSummary | None, artifact_url: str | None) -> dict[str, Any]:
    """The results body (schema version 1) for the dispatch ``payload``."""
    upstream: dict[str, Any] = {"repo": payload["upstream"]["repo"], "sha": payload["sha"]}
    if payload.get("pr_number"):
        upstream["pr_number"] = payload["pr_number"]
    body: dict[str, Any] = {
        "schema_version": 1, "delivery_id": payload["delivery_id"], "upstream": upstream, "run_id": run_id,
        "run_attempt": run_attempt, "job_id": job_id, "job_name": job_name, "status": status,
    }
    if status == "completed":
        body["conclusion"] = conclusion
        body["completed_at"] = _now()
        if tests is not None:
            body["tests"] = {"passed": tests.passed, "failed": tests.failed, "skipped": tests.skipped,
                             "errors": tests.errors}
    else:
        body["started_at"] = _now()
    if artifact_url:
        body["artifact_url"] = artifact_url
    return body


@click.command(epilog="""\b
Examples:
  # in a GitHub Actions job started by the relay (permissions: id-token: write)
  solstice-report --status in_progress
  solstice-report --status completed --conclusion "${{ job.status }}" --junit 'reports/**/*.xml' \\
      --artifact-url "https://ci.example.org/runs/$GITHUB_RUN_ID"
""")
@click.option("--status", type=click.Choice(["in_progress", "completed"]), required=True,
              help="in_progress when the job starts, completed at its end.")
@click.option("--conclusion", type=click.Choice(CONCLUSIONS), default=None,
              help="With --status completed (GitHub's job.status values fit).")
@click.option("--junit", "junit", multiple=True, metavar="GLOB", help="JUnit XML files to count (repeatable).")
@click.option("--artifact-url", default=None, help="An https link to the job's logs and reports.")
@click.option("--job-id", default=None, help="The job's key (default: $GITHUB_JOB).")
@click.option("--job-name", default=None, help="The name shown upstream (default: the job id).")
@click.option("--event", "event_path", default=None, help="The dispatch event JSON (default: $GITHUB_EVENT_PATH).")
@click.option("--url", "results_url", default=None, help="The results API (default: the dispatch's results_url).")
@click.option("--audience", default=None,
              help="The OIDC audience the server takes (default: the results URL's server).")
@click.option("--retries", default=2, show_default=True, help="Tries again after 429 and 5xx (Retry-After).")
@click.option("--max-wait", default=60.0, show_default=True, help="The longest Retry-After waited for, in seconds.")
def cli(status: str, conclusion: str | None, junit: tuple[str, ...], artifact_url: str | None, job_id: str | None,
        job_name: str | None, event_path: str | None, results_url: str | None, audience: str | None,
        retries: int, max_wait: float) -> None:
    """Report this downstream job to the Solstice relay that dispatched it.

    4xx answers fail the step (fix the report or the setup); 5xx answers
    and an unreachable server only warn: they must not fail your CI.
    """
    if status == "completed" and conclusion is None:
        raise click.UsageError("--status completed needs --conclusion")
    if status == "in_progress" and conclusion is not None:
        raise click.UsageError("--conclusion goes with --status completed only")
    payload = _dispatch(event_path or os.environ.get("GITHUB_EVENT_PATH"))
    url = results_url or str(payload.get("results_url") or "")
    if not url:
        raise ReportSetupError("the dispatch names no results_url: give --url")
    parsed = urllib.parse.urlsplit(url)
    aud = audience or f"{parsed.scheme}://{parsed.netloc}{parsed.path.removesuffix(RESULTS_PATH)}".rstrip("/")
    job = job_id or os.environ.get("GITHUB_JOB") or ""
    if not job:
        raise ReportSetupError("no job id: GITHUB_JOB is not set (give --job-id)")
    run_id = os.environ.get("GITHUB_RUN_ID") or ""
    attempt = os.environ.get("GITHUB_RUN_ATTEMPT") or "1"
    if not run_id or not attempt.isdigit():
        raise ReportSetupError("GITHUB_RUN_ID / GITHUB_RUN_ATTEMPT are not set: run this inside GitHub Actions")
    body = build_report(payload, status, conclusion, job, job_name or job, run_id, int(attempt),
                        _tests(junit) if status == "completed" else None, artifact_url)
    for attempt_no in range(retries + 1):
        answer = _post(url, _oidc_token(aud), body)
        waiting = answer.status == 429 or answer.status >= 500 or answer.status == 0
        if not waiting or attempt_no == retries or answer.retry_after > max_wait:
            break
        time.sleep(answer.retry_after or min(5.0 * 2 ** attempt_no, max_wait))
    detail = str(answer.doc.get("detail") or "")
    if 200 <= answer.status < 300:
        click.echo(f"solstice-report: accepted ({answer.doc.get('state', status)}): {detail}")
        return
    if 400 <= answer.status < 500:
        problems = answer.doc.get("problems")
        extra = "".join(f"\n  {p}" for p in problems) if isinstance(problems, list) else ""
        click.echo(f"::error::solstice-report: rejected (HTTP {answer.status}): {detail}{extra}", err=True)
        sys.exit(1)
    what = f"HTTP {answer.status}" if answer.status else "no answer"
    click.echo(f"::warning::solstice-report: the results API is unavailable ({what}), this report is lost but "
               f"your CI is not failed for it: {detail}")


main = run_cli(cli)
