"""The ``report`` node of a job: test reports the runner reads after the steps.

    report junit="build/test-results/*.xml"

``junit`` is a glob relative to the checkout (``**`` spans directories);
several ``report`` nodes add up. What the files say (counts, failing tests)
is shown on the job page and in the forge's check (common/junit.py reads them).
"""

from __future__ import annotations

import json

from common.workflow.checks import NodeChecker
from common.workflow.names import workdir_problem
from common.workflow.syntax import RawNode

MAX_REPORTS = 16
_PROPS = {"junit": "a string"}


def check_report(checker: NodeChecker, node: RawNode, path: str, count: int) -> str | None:
    """The node's ``junit`` pattern, or None (with the errors reported); ``count`` = reports before it."""
    rpath = f"{path} > report"
    checker.untagged(node, rpath)
    checker.no_args(node, rpath)
    checker.no_children(node, rpath)
    found = checker.props(node, rpath, _PROPS)
    if "junit" not in found:
        if not any(prop.key == "junit" for prop in node.props):
            checker.error(node.start, rpath, 'report needs a junit="PATTERN" property (JUnit XML files to read)')
        return None
    pattern, offset = str(found["junit"][0]), found["junit"][1]
    problem = workdir_problem(pattern)
    if problem:
        checker.error(offset, rpath, f"junit pattern {json.dumps(pattern)} {problem}")
        return None
    if count == MAX_REPORTS:
        checker.error(node.start, rpath, f"a job has at most {MAX_REPORTS} report nodes")
        return None
    return pattern
