"""``ciadm last-green`` and ``ciadm hooks``: greenness, read from the integration's HTTP API.

Greenness lives in the integration (its store, next to the forge), not in
the orchestrators' AdminService, so these two commands ask the
integration's read endpoints (``integration.greenness.api``) at
``--integration URL`` / ``$SOLSTICE_INTEGRATION_URL`` / ``integration:`` in
ciadm.yaml; on a single node that is the address ``solstice serve``
listens on. Exit status as for the other commands: 1 for an unknown queue
or a refused request, 3 when the integration cannot be reached.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import click

from ciadm.cli import cli
from ciadm.session import EXIT_UNREACHABLE, Session, json_option, show
from common.cli import fail
from common.tables import table

_REPO = re.compile(r"(?:(github|forgejo):)?([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9._-]+)")


def _base(ctx: click.Context, given: str | None) -> str:
    session: Session = ctx.obj
    url = (given or session.settings.integration).rstrip("/")
    if not url:
        fail("the integration's address is not set: give --integration URL or set SOLSTICE_INTEGRATION_URL "
             "(on a single node, the address solstice serve listens on)", 2)
    if not url.lower().startswith(("http://", "https://")):
        fail(f"--integration {url!r} must be an http(s) URL", 2)
    return url


def _get(ctx: click.Context, url: str) -> Any:
    session: Session = ctx.obj

    async def go() -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=session.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url, allow_redirects=False) as answer:
            try:
                return answer.status, await answer.json(content_type=None)
            except ValueError:
                return answer.status, {"detail": (await answer.text())[:200]}

    try:
        status, doc = asyncio.run(go())
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        fail(f"cannot reach the integration at {url.split('?')[0]}: {err or type(err).__name__}", EXIT_UNREACHABLE)
    if status != 200:
        detail = doc.get("detail", "") if isinstance(doc, dict) else ""
        fail(detail or f"the integration answered {status}", 1)
    return doc


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


def _degree(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def last_green_lines(doc: dict[str, Any]) -> list[str]:
    q = doc["queue"]
    last, head = doc["last_green"], doc["head"]
    lines = [f"queue {q['forge']}:{q['repo']} {q['ref']}" + (f" project {doc['project']}" if doc["project"] else "")]
    lines.append(f"last green: {last['sha']} (recorded {_when(last['recorded_at'])})" if last else
                 "last green: none yet")
    if head:
        lines.append(f"newest:     {head['sha']} {head['status'].replace('_', ' ')}, degree {_degree(head['degree'])}")
        lines += [f"  {reason}" for reason in head["reasons"]]
    rows = [[name, p["last_green"]["sha"][:12] if p["last_green"] else "none",
             "green" if p["green"] else "not green"] for name, p in sorted(doc.get("projects", {}).items())]
    if rows:
        lines += ["", *table([["PROJECT", "LAST GREEN", "NOW"], *rows])]
    history = [[_when(h["at"]), h["sha"][:12], h["project"] or "-", h["event"], h["reason"][:80]]
               for h in doc.get("history", [])]
    if history:
        lines += ["", *table([["WHEN", "COMMIT", "PROJECT", "EVENT", "WHY"], *history])]
    return lines


@cli.command(
    "last-green",
    epilog="""\b
Examples:
  ciadm last-green forgejo:acme/app main
  ciadm last-green github:acme/app refs/heads/release --project web
  ciadm last-green --json forgejo:acme/app main | jq -r .last_green.sha
  SOLSTICE_INTEGRATION_URL=https://ci.example.org ciadm last-green forgejo:acme/app main
""",
)
@click.argument("repo")
@click.argument("ref")
@click.option("--project", default="",
              help="A project of the repository (greenness.projects); default the whole queue.")
@click.option("--integration", default=None, metavar="URL", help="The integration's HTTP address "
              "(also $SOLSTICE_INTEGRATION_URL).")
@json_option
@click.pass_context
def last_green(ctx: click.Context, repo: str, ref: str, project: str, integration: str | None, as_json: bool) -> None:
    """The newest commit of REF on which every required job passed, the newest commit's degree, and history.

    REPO is forge:owner/name (forge github or forgejo; github when left out);
    REF a branch name or a full ref.
    """
    match = _REPO.fullmatch(repo)
    if not match:
        fail(f"REPO {repo!r} must be forge:owner/name (github:acme/app, forgejo:acme/app)", 2)
    forge, owner, name = match.group(1) or "github", match.group(2), match.group(3)
    path = f"/api/v1/queues/{forge}/{quote(owner)}/{quote(name)}/{quote(ref)}/last-green"
    doc = _get(ctx, _base(ctx, integration) + path + (f"?{urlencode({'project': project})}" if project else ""))
    show(as_json, doc, last_green_lines(doc))


@cli.command(
    epilog="""\b
Examples:
  ciadm hooks
  ciadm hooks --hook deploy --limit 100
""",
)
@click.option("--hook", default="", help="Only this hook's deliveries.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="How many deliveries to show.")
@click.option("--integration", default=None, metavar="URL", help="The integration's HTTP address "
              "(also $SOLSTICE_INTEGRATION_URL).")
@json_option
@click.pass_context
def hooks(ctx: click.Context, hook: str, limit: int, integration: str | None, as_json: bool) -> None:
    """The greenness hooks' delivery log, newest first: which transition, delivered or pending, attempts, last error."""
    query = urlencode({k: v for k, v in (("hook", hook), ("limit", str(limit))) if v})
    doc = _get(ctx, f"{_base(ctx, integration)}/api/v1/hooks/deliveries?{query}")
    rows = [[d["hook"], d["queue"], str(d["transition"]), d["body"]["state"], d["body"]["commit"][:12], d["state"],
             str(d["attempts"]), _when(d["delivered_at"] or d["created_at"]), d["last_error"][:60] or "-"]
            for d in doc["deliveries"]]
    show(as_json, doc["deliveries"], table([["HOOK", "QUEUE", "#", "STATE", "COMMIT", "DELIVERY", "ATTEMPTS", "AT",
                                             "LAST ERROR"], *rows]) if rows else [], empty="no deliveries")
