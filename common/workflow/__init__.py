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

from common.workflow.errors import WorkflowError, WorkflowInvalid, WorkflowNotFound
from common.workflow.graph import execution_stages
from common.workflow.model import Env, Job, Schedule, Step, Workflow, merge_env
from common.workflow.parser import DEFAULT_PATH, decode_workflow, load_workflow, parse_workflow
from common.workflow.render import render_workflow

__all__ = [
    "DEFAULT_PATH",
    "Env",
    "Job",
    "Schedule",
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
