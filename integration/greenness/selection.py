"""Incremental since green: which jobs a new head must run, from the paths changed since the last green commit.

Each configured project owns path patterns and names the jobs that
validate it. A project none of whose paths changed carries its greenness
forward: its jobs are not run, their outcomes are copied from the last
green commit ("carried"). Everything else runs: the jobs of affected
projects and every job no project claims. It falls back to the whole
workflow - and says why - when there is no green commit yet, when the last
green commit is not an ancestor of the head (history rewritten, a
force-push), when a changed path belongs to no project, or when no project
is configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from integration.greenness.settings import ProjectSettings

SHOWN_PATHS = 3


@dataclass(frozen=True, slots=True)
class Changes:
    """What a forge says changed from one commit to another."""

    paths: tuple[str, ...]
    ancestor: bool = True  # the older commit is an ancestor of the newer
    complete: bool = True  # every changed path is listed (GitHub lists at most 300)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run for one head: ``carry`` (job keys) come from ``base``; ``why`` is recorded with the commit."""

    carry: frozenset[str]
    base: str
    why: str

    @property
    def full(self) -> bool:
        return not self.carry


def full(why: str) -> Plan:
    return Plan(frozenset(), "", f"full: {why}")


@lru_cache(maxsize=512)
def _pattern(glob: str) -> re.Pattern[str]:
    """``**`` crosses directories, ``*`` and ``?`` stay within one; a trailing ``/`` means everything under it."""
    if glob.endswith("/"):
        glob += "**"
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def matches(glob: str, path: str) -> bool:
    return _pattern(glob).fullmatch(path) is not None


def owners(projects: Mapping[str, ProjectSettings], path: str) -> set[str]:
    """The projects whose patterns match ``path``."""
    return {name for name, p in projects.items() if any(matches(g, path) for g in p.paths)}


def plan(projects: Mapping[str, ProjectSettings], jobs: Iterable[str], base: str, changes: Changes | None,
         head: str) -> Plan:
    """The plan for ``head`` with the ``changes`` since ``base``."""
    if not projects:
        return full("no projects are configured")
    if not base or changes is None:
        return full("the queue has no green commit yet")
    if not changes.ancestor:
        return full(f"the last green commit {base[:12]} is not an ancestor of {head[:12]} (history rewritten?)")
    if not changes.complete:
        return full(f"the forge does not list every path changed since {base[:12]}")
    changed = changes.paths
    affected: set[str] = set()
    loose: list[str] = []
    for path in changed:
        found = owners(projects, path)
        if not found:
            loose.append(path)
        affected |= found
    if loose:
        return full(f"{_paths(loose)} belong to no project")
    keys = set(jobs)
    run = {k for name in affected for k in projects[name].jobs}
    claimed = {k for p in projects.values() for k in p.jobs}
    carry = frozenset((keys & claimed) - run)
    if not carry:
        return full(f"every project is affected since {base[:12]}")
    kept = sorted(set(projects) - affected)
    return Plan(carry, base, f"incremental since {base[:12]}: {', '.join(sorted(affected)) or 'no project'} changed; "
                             f"{', '.join(kept)} carried")


def _paths(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    return shown + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else "")
