"""The page shell and the small pieces every page uses (state badges, times, durations).

Everything a page shows from the store or a log goes through ``e`` (escape)
or ``AnsiRenderer``; attribute values are always double-quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from dashboard.ansi import escape as e
from orchestrator.operators import Principal
from orchestrator.store import JobState, StepState

# Colour-blind safe: every state has its colour, an icon AND its name.
ICONS = {"queued": "\u25cb", "provisioning": "\u25d4", "running": "\u25b6", "succeeded": "\u2713",
         "failed": "\u2717", "cancelled": "\u2298", "errored": "!", "skipped": "\u2192", "unknown": "?"}
STATIC_VERSION = "3"  # bumped with the static files, so browsers fetch them again


def state_name(state: JobState | StepState | str) -> str:
    if isinstance(state, str):
        return state
    if isinstance(state, StepState):
        return {StepState.UNSPECIFIED: "queued", StepState.RUNNING: "running"}.get(state, state.name.lower())
    return state.name.lower()


def badge(state: JobState | StepState | str, label: str = "") -> str:
    """A state as icon + name in the state's colour."""
    name = state_name(state)
    return (f'<span class="st st-{e(name)}"><span class="ic" aria-hidden="true">{ICONS.get(name, "?")}</span>'
            f" {e(label or name)}</span>")


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 07s``, ``12.3s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """A ``<time>`` saying how long ago, with the exact UTC time on hover."""
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    exact = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = (now - moment).total_seconds()
    if ago < 0:
        text = exact
    elif ago < 90:
        text = f"{ago:.0f}s ago"
    elif ago < 5400:
        text = f"{ago / 60:.0f} min ago"
    elif ago < 2 * 86400:
        text = f"{ago / 3600:.0f} h ago"
    else:
        text = moment.astimezone(UTC).strftime("%Y-%m-%d")
    return f'<time datetime="{e(moment.isoformat())}" title="{e(exact)}">{e(text)}</time>'


def short_sha(sha: str) -> str:
    return sha[:10]


def repo_path(forge: str, repo: str) -> str:
    """The dashboard's path of a repository's matrix (``-`` for jobs without a forge; a local
    path keeps its leading slash: ``/local//src/app``)."""
    return f"/{quote(forge or '-', safe='')}/{quote(repo, safe='/')}"


def ref_name(ref: str) -> str:
    """``refs/heads/main`` -> ``main``; ``refs/pull/7/head`` -> ``#7``."""
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/"):]
    if ref.startswith("refs/tags/"):
        return "tag " + ref[len("refs/tags/"):]
    if ref.startswith("refs/pull/"):
        return "#" + ref.split("/")[2]
    return ref


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: the signed-in operator (or None) and the CSRF token of their forms."""

    principal: Principal | None
    csrf: str = ""
    signin_required: bool = False


def page(title: str, body: str, viewer: Viewer, *, crumbs: str = "", live: bool = False) -> str:
    """A whole HTML page around ``body`` (already escaped markup)."""
    if viewer.principal is not None:
        who = (f'<form method="post" action="/signout" class="inline"><input type="hidden" name="csrf" '
               f'value="{e(viewer.csrf)}"><span class="who">signed in as <strong>{e(viewer.principal.name)}'
               f'</strong> ({e(viewer.principal.role.label)})</span> <button type="submit" class="link">sign out'
               "</button></form>")
    else:
        who = '<a href="/signin">sign in</a>'
    script = f'<script src="/static/dashboard.js?v={STATIC_VERSION}" defer></script>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{e(title)} - Solstice CI</title>
<link rel="stylesheet" href="/static/dashboard.css?v={STATIC_VERSION}">
{script}
</head><body{' data-live="1"' if live else ''}>
<a class="skip" href="#main">Skip to content</a>
<header class="top" role="banner"><nav aria-label="Site"><a class="brand" href="/">Solstice CI</a>{crumbs}</nav>
<div class="account">{who}</div></header>
<main id="main" tabindex="-1">
{body}
</main>
<footer role="contentinfo"><a href="/metrics">metrics</a> · <a href="/healthz">health</a></footer>
</body></html>
"""


def crumb(*parts: tuple[str, str]) -> str:
    """`` / a / b`` links after the brand: (text, href) pairs; the last is the current page."""
    out = []
    for i, (text, href) in enumerate(parts):
        if i == len(parts) - 1:
            out.append(f' / <span aria-current="page">{e(text)}</span>')
        else:
            out.append(f' / <a href="{e(href)}">{e(text)}</a>')
    return "".join(out)


def error_page(status: int, message: str, viewer: Viewer) -> str:
    return page(f"{status}", f'<h1>{status}</h1><p class="notice">{e(message)}</p>', viewer)
