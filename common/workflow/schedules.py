"""The ``on`` node of a workflow: when it runs by itself.

    on schedule="0 3 * * *" branch="main"

``schedule`` is a five-field cron expression in UTC (common/cron.py);
``branch`` is the branch whose head commit the run builds. Several ``on``
nodes add up. The forge integration takes a branch's schedules from the
workflow at that branch's head (each push to it replaces them) and starts
one run per tick, on one integration replica, whatever the number of them.
"""

from __future__ import annotations

import json
import re

from common.cron import CronError, parse_cron
from common.workflow.checks import NodeChecker
from common.workflow.model import Schedule
from common.workflow.syntax import RawNode
from common.workflow.values import STRING

MAX_SCHEDULES = 16
_PROPS = {"schedule": STRING, "branch": STRING}
# A branch name as git allows it, kept to characters that are safe in URLs and argv.
BRANCH_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
BRANCH_RULE = "1-200 characters of letters, digits, '.', '_', '/' and '-', not starting with '.', '/' or '-'"


def branch_problem(name: str) -> str | None:
    """Why ``name`` is not a usable branch name, or None."""
    if not BRANCH_RE.fullmatch(name):
        return f"use {BRANCH_RULE}"
    if ".." in name or "//" in name or name.endswith(("/", ".", ".lock")) or "/." in name:
        return "is not a valid git branch name ('..', '//', '/.', or a trailing '/', '.' or '.lock')"
    return None


def check_on(checker: NodeChecker, node: RawNode, count: int) -> Schedule | None:
    """The node's schedule, or None (with the errors reported); ``count`` = ``on`` nodes before it."""
    path = "workflow > on"
    checker.untagged(node, path)
    checker.no_args(node, path)
    checker.no_children(node, path)
    found = checker.props(node, path, _PROPS)
    ok = True
    for key in ("schedule", "branch"):
        if key not in found and not any(prop.key == key for prop in node.props):
            checker.error(node.start, path, f'on is missing required property "{key}" (on schedule="0 3 * * *" '
                                            'branch="main")')
            ok = False
    cron = branch = None
    if "schedule" in found:
        text, offset = str(found["schedule"][0]), found["schedule"][1]
        try:
            parse_cron(text)
            cron = text
        except CronError as err:
            checker.error(offset, path, f"invalid schedule {json.dumps(text)}: {err}")
    if "branch" in found:
        text, offset = str(found["branch"][0]), found["branch"][1]
        problem = branch_problem(text)
        if problem:
            checker.error(offset, path, f"invalid branch {json.dumps(text)}: {problem}")
        else:
            branch = text
    if count == MAX_SCHEDULES:
        checker.error(node.start, path, f"a workflow has at most {MAX_SCHEDULES} schedules")
        return None
    return Schedule(cron, branch) if ok and cron and branch else None
