"""KDL workflows: ``.solstice/workflow.kdl`` to a typed, validated model and back.

    load_workflow(path) / parse_workflow(text, filename) -> Workflow
    decode_workflow(bytes, filename) -> text (WorkflowInvalid when not UTF-8)
    render_workflow(Workflow) -> canonical KDL text
    execution_stages(Workflow) -> jobs grouped in stages that can run in parallel
    merge_env(workflow.env, job.env, step.env) -> the env a step sees

Invalid files raise WorkflowInvalid, whose ``errors`` list every problem as a
WorkflowError (file, line, col, node path, message). The schema is documented
in docs/workflow.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.workflow.errors import WorkflowError, WorkflowInvalid, WorkflowNotFound
    from common.workflow.graph import execution_stages
    from common.workflow.model import Env, Job, Step, Workflow, merge_env
    from common.workflow.parser import DEFAULT_PATH, decode_workflow, load_workflow, parse_workflow
    from common.workflow.render import render_workflow

# Imported on first use: the runner (and its guest image, which has no KDL
# library) imports ``common.workflow.names`` and ``.limits`` through the
# request checks, and must not pull in the parser with them.
_HOMES = {
    "WorkflowError": "errors", "WorkflowInvalid": "errors", "WorkflowNotFound": "errors",
    "execution_stages": "graph",
    "Env": "model", "Job": "model", "Step": "model", "Workflow": "model", "merge_env": "model",
    "DEFAULT_PATH": "parser", "decode_workflow": "parser", "load_workflow": "parser", "parse_workflow": "parser",
    "render_workflow": "render",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "DEFAULT_PATH",
    "Env",
    "Job",
    "Step",
    "Workflow",
    "WorkflowError",
    "WorkflowInvalid",
    "WorkflowNotFound",
    "decode_workflow",
    "execution_stages",
    "load_workflow",
    "merge_env",
    "parse_workflow",
    "render_workflow",
]
