"""Workflow files to the typed model, with every problem reported in one pass.

The checker walks the raw KDL tree once. Each node kind has one method that
checks its shape (properties, arguments, children) and returns the model
object, or None when it is too broken to build; problems are collected, never
raised mid-walk, so the user sees all of them at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from common.workflow.checks import NodeChecker
from common.workflow.errors import WorkflowError, WorkflowInvalid, WorkflowNotFound
from common.workflow.graph import find_cycles
from common.workflow.limits import DEFAULT_LIMITS, WorkflowLimits, show_bytes
from common.workflow.matrix import (
    Matrix,
    check_matrix,
    check_references,
    expand,
    expansion_ids,
    references,
    runs_on_problem,
)
from common.workflow.model import Env, Job, Schedule, Step, Workflow
from common.workflow.names import ENV_NAME_RULE, ID_RULE, is_env_name, is_id, workdir_problem
from common.workflow.outputs import OutputChecks
from common.workflow.reports import check_report
from common.workflow.schedules import check_on
from common.workflow.syntax import KdlSyntaxError, RawNode, parse_kdl
from common.workflow.values import BOOLEAN, STRING, typed

DEFAULT_PATH = Path(".solstice/workflow.kdl")

_WORKFLOW_PROPS = {"name": STRING}
_JOB_PROPS = {"id": STRING, "name": STRING, "runs_on": STRING, "timeout": STRING, "required": BOOLEAN}
_STEP_PROPS = {
    "name": STRING,
    "run": STRING,
    "timeout": STRING,
    "workdir": STRING,
    "continue_on_error": BOOLEAN,
}
_WORKFLOW_CHILDREN = ("env", "job", "on")
_JOB_CHILDREN = ("artifact", "cache", "env", "matrix", "needs", "report", "secret", "step")
_STEP_CHILDREN = ("env", "run")


@dataclass(frozen=True, slots=True)
class _Need:
    job_id: str
    start: int


@dataclass(frozen=True, slots=True)
class _Secret:
    name: str
    start: int


@dataclass(frozen=True, slots=True)
class _JobDraft:
    """A checked job plus what the cross-job checks need to point at."""

    job: Job | None
    id: str | None
    path: str
    start: int
    id_start: int
    needs: tuple[_Need, ...]
    secrets: tuple[_Secret, ...]
    matrix: Matrix | None = None
    runs_on_start: int = 0


class _Checker(NodeChecker):
    # -- steps ----------------------------------------------------------------

    def run_node(self, node: RawNode, path: str) -> tuple[str, int] | None:
        run_path = f"{path} > run"
        self.untagged(node, run_path)
        self.no_children(node, run_path)
        for prop in node.props:
            self.error(prop.start, run_path, f'unknown property "{prop.key}" (run takes one string argument)')
        if len(node.args) != 1:
            if node.args:
                self.error(node.args[1].start, run_path, "run takes exactly one string argument")
            else:
                self.error(node.start, run_path, "run takes exactly one string argument")
            return None
        value, problem = typed(node.args[0], STRING)
        if problem:
            self.error(node.args[0].start, run_path, f"run script {problem}")
            return None
        return str(value), node.args[0].start

    def step(self, node: RawNode, path: str) -> Step | None:
        self.untagged(node, path)
        self.no_args(node, path)
        found = self.props(node, path, _STEP_PROPS)
        env_nodes: list[RawNode] = []
        run = found.get("run")
        # A run property of the wrong type is already reported; saying the
        # step has no run as well would send the user looking for the wrong fix.
        ok = run is not None or not any(prop.key == "run" for prop in node.props)
        for child in node.children:
            if child.name == "env":
                env_nodes.append(child)
            elif child.name == "run":
                given = self.run_node(child, path)
                if run is not None:
                    self.error(child.start, path, f"run is given twice (first at {self.at(run[1])})")
                    ok = False
                elif given is None:
                    ok = False
                run = run or given
            else:
                self.unknown_child(child, path, _STEP_CHILDREN)
        env = self.env(env_nodes, path)
        if run is None:
            if ok:
                self.error(node.start, path, 'step has no "run": add run="..." or a run child node')
            return None
        script, run_at = str(run[0]), run[1]
        if not script.strip():
            self.error(run_at, path, "run script is empty")
        size = len(script.encode())
        if size > self.limits.max_script_bytes:
            self.error(run_at, path, f"run script is {show_bytes(size)}; the limit is "
                                     f"{show_bytes(self.limits.max_script_bytes)} "
                                     f"{self.limits.setting('max_script_bytes')}")
        name = self.single_line(found, "name", path)
        workdir = None
        if "workdir" in found:
            workdir, offset = str(found["workdir"][0]), found["workdir"][1]
            problem = workdir_problem(workdir)
            if problem:
                self.error(offset, path, f"workdir {json.dumps(workdir)} {problem}")
        timeout = self.timeout(found, path)
        return Step(
            run=script,
            name=name,
            env=env,
            timeout=timeout,
            workdir=workdir,
            continue_on_error=bool(found.get("continue_on_error", (False, 0))[0]),
        )

    # -- jobs -----------------------------------------------------------------

    def job(self, node: RawNode, number: int) -> _JobDraft:
        found_id = next((p for p in node.props if p.key == "id"), None)
        raw_id = found_id.value.value.value if found_id else None
        label = raw_id if isinstance(raw_id, str) and raw_id else f"#{number}"
        path = f'job "{label}"' if label != f"#{number}" else f"job #{number}"
        self.untagged(node, path)
        self.no_args(node, path)
        found = self.props(node, path, _JOB_PROPS)
        job_id: str | None = None
        id_start = node.start
        if "id" not in found:
            if found_id is None:
                self.error(node.start, path, 'job is missing required property "id"')
        else:
            text, id_start = str(found["id"][0]), found["id"][1]
            if is_id(text):
                job_id = text
            else:
                self.error(id_start, path, f"invalid job id {json.dumps(text)}: use {ID_RULE}")
        runs_on = None
        runs_on_start = node.start
        if "runs_on" not in found:
            if not any(p.key == "runs_on" for p in node.props):
                self.error(node.start, path, 'job is missing required property "runs_on"')
        else:
            text, offset = str(found["runs_on"][0]), found["runs_on"][1]
            runs_on_start = offset
            if is_id(text) or references(text):  # a matrix label is checked once expanded
                runs_on = text
            else:
                self.error(offset, path, f"invalid runs_on label {json.dumps(text)}: use {ID_RULE}")
        timeout = self.timeout(found, path)
        name = self.single_line(found, "name", path)

        env_nodes: list[RawNode] = []
        matrix_nodes: list[RawNode] = []
        reports: list[str | None] = []
        steps: list[Step | None] = []
        needs: dict[str, int] = {}
        secrets: dict[str, int] = {}
        artifacts, caches = [], []
        artifact_names: dict[str, int] = {}
        cache_names: dict[str, int] = {}
        outputs = OutputChecks(self)
        for child in node.children:
            if child.name == "env":
                env_nodes.append(child)
            elif child.name == "step":
                if len(steps) == self.limits.max_steps:
                    self.error(child.start, path, f"job has more than {self.limits.max_steps} steps "
                                                  f"{self.limits.setting('max_steps')}")
                steps.append(self.step(child, f"{path} > step #{len(steps) + 1}"))
            elif child.name in ("needs", "secret"):
                self.list_node(child, path, needs if child.name == "needs" else secrets)
            elif child.name == "artifact":
                artifacts.append(outputs.artifact(child, f"{path} > artifact", artifact_names))
            elif child.name == "cache":
                caches.append(outputs.cache(child, f"{path} > cache", cache_names))
            elif child.name == "matrix":
                matrix_nodes.append(child)
            elif child.name == "report":
                reports.append(check_report(self, child, path, len(reports)))
            else:
                self.unknown_child(child, path, _JOB_CHILDREN)
        env = self.env(env_nodes, path)
        matrix = check_matrix(self, matrix_nodes[0], path) if matrix_nodes else None
        for extra in matrix_nodes[1:]:
            self.error(extra.start, f"{path} > matrix",
                       f"a job has one matrix (first at {self.at(matrix_nodes[0].start)})")
        check_references(self, node, path, matrix.axes if matrix else None)
        if not steps:
            self.error(node.start, path, "job has no steps: add at least one step")
        draft_needs = tuple(_Need(job_id, offset) for job_id, offset in needs.items())
        job = None
        if job_id and runs_on and steps and all(steps) and all(artifacts) and all(caches):
            job = Job(
                id=job_id,
                runs_on=runs_on,
                steps=tuple(s for s in steps if s is not None),
                env=env,
                timeout=timeout,
                needs=tuple(needs),
                secrets=tuple(secrets),
                artifacts=tuple(a for a in artifacts if a is not None),
                caches=tuple(c for c in caches if c is not None),
                name=name,
                reports=tuple(r for r in reports if r is not None),
                required=bool(found.get("required", (True, 0))[0]),
            )
        if matrix_nodes and matrix is None or None in reports:
            job = None  # the matrix's own errors are reported
        draft_secrets = tuple(_Secret(secret, offset) for secret, offset in secrets.items())
        return _JobDraft(job, job_id, path, node.start, id_start, draft_needs, draft_secrets, matrix, runs_on_start)

    def list_node(self, node: RawNode, path: str, into: dict[str, int]) -> None:
        """Check a ``needs`` or ``secret`` node and add its names to ``into``."""
        list_path = f"{path} > {node.name}"
        self.untagged(node, list_path)
        self.no_children(node, list_path)
        for prop in node.props:
            self.error(prop.start, list_path, f'unknown property "{prop.key}" ({node.name} takes names as arguments)')
        for name, offset in self.string_args(node, list_path):
            if node.name == "secret" and not is_env_name(name):
                self.error(offset, list_path, f"invalid secret name {json.dumps(name)}: use {ENV_NAME_RULE}")
            elif name in into:
                self.error(offset, list_path, f"{json.dumps(name)} is listed twice (first at {self.at(into[name])})")
            else:
                into[name] = offset

    # -- the whole file -------------------------------------------------------

    def document(self, nodes: list[RawNode]) -> Workflow | None:
        roots = [n for n in nodes if n.name == "workflow"]
        for node in nodes:
            if node.name != "workflow":
                self.error(node.start, "", f'unknown top-level node "{node.name}" (expected "workflow")')
        if not roots:
            if not nodes:
                self.error(0, "", 'no "workflow" node: the file must contain one workflow { ... } node')
            return None
        for extra in roots[1:]:
            self.error(extra.start, "workflow",
                       f'only one "workflow" node is allowed (first at {self.at(roots[0].start)})')
        return self.workflow(roots[0])

    def workflow(self, node: RawNode) -> Workflow | None:
        path = "workflow"
        self.untagged(node, path)
        self.no_args(node, path)
        found = self.props(node, path, _WORKFLOW_PROPS)
        name = self.single_line(found, "name", path)
        env_nodes: list[RawNode] = []
        drafts: list[_JobDraft] = []
        schedules: list[Schedule | None] = []
        for child in node.children:
            if child.name == "env":
                env_nodes.append(child)
            elif child.name == "job":
                if len(drafts) == self.limits.max_jobs:
                    self.error(child.start, path, f"workflow has more than {self.limits.max_jobs} jobs "
                                                  f"{self.limits.setting('max_jobs')}")
                drafts.append(self.job(child, len(drafts) + 1))
            elif child.name == "on":
                schedule = check_on(self, child, len(schedules))
                if schedule is not None and schedule in schedules:
                    self.error(child.start, "workflow > on", "this schedule is given twice")
                schedules.append(schedule)
            else:
                self.unknown_child(child, path, _WORKFLOW_CHILDREN)
        env = self.env(env_nodes, path)
        if not drafts:
            self.error(node.start, path, "workflow has no jobs: add at least one job")
        self.check_graph(drafts)
        self.check_secrets(drafts, env)
        if self._found or not all(d.job for d in drafts):
            return None
        jobs = self.expand_matrices(drafts, node.start)
        if self._found:
            return None
        return Workflow(jobs=jobs, name=name, env=env, schedules=tuple(s for s in schedules if s is not None))

    def expand_matrices(self, drafts: list[_JobDraft], start: int) -> tuple[Job, ...]:
        """Each matrix job as its expansions; needs on a matrix job become needs on all of them."""
        taken = {d.id for d in drafts if d.id}
        expanded: dict[str, list[Job]] = {}
        for draft in drafts:
            job = draft.job
            assert job is not None
            if draft.matrix is None:
                expanded[job.id] = [job]
                continue
            ids = expansion_ids(job.id, draft.matrix, taken)
            taken.update(ids)
            expanded[job.id] = []
            for one, combo in expand(job, draft.matrix, ids):
                problem = runs_on_problem(one.runs_on)
                if problem:
                    values = " ".join(f"{axis}={json.dumps(value)}" for axis, value in combo)
                    self.error(draft.runs_on_start, draft.path,
                               f"runs_on becomes {json.dumps(one.runs_on)} for {values}, not a label: {problem}")
                    break
                expanded[job.id].append(one)
        jobs = [
            replace(one, needs=tuple(n for need in one.needs for n in (j.id for j in expanded[need])))
            for group in expanded.values() for one in group
        ]
        if len(jobs) > self.limits.max_jobs:
            self.error(start, "workflow", f"the matrices make {len(jobs)} jobs; the limit is {self.limits.max_jobs} "
                                          f"{self.limits.setting('max_jobs')}")
        return tuple(jobs)

    def check_graph(self, drafts: list[_JobDraft]) -> None:
        first: dict[str, _JobDraft] = {}
        for draft in drafts:
            if draft.id is None:
                continue
            if draft.id in first:
                self.error(
                    draft.id_start, draft.path,
                    f'duplicate job id "{draft.id}" (first defined at {self.at(first[draft.id].start)})',
                )
            else:
                first[draft.id] = draft
        graph: dict[str, list[str]] = {draft_id: [] for draft_id in first}
        for draft in drafts:
            for need in draft.needs:
                if need.job_id == draft.id:
                    self.error(need.start, f"{draft.path} > needs", "a job cannot need itself")
                elif need.job_id not in first:
                    self.error(need.start, f"{draft.path} > needs", f'needs unknown job "{need.job_id}"')
                elif draft.id is not None and first[draft.id] is draft:
                    graph[draft.id].append(need.job_id)
        for cycle in find_cycles(graph):
            draft = first[cycle[0]]
            need = next(n for n in draft.needs if n.job_id == cycle[1])
            self.error(need.start, f"{draft.path} > needs", "needs cycle: " + " -> ".join(cycle))


    def check_secrets(self, drafts: list[_JobDraft], workflow_env: Env) -> None:
        """A secret reaches the steps as an env variable of the same name, so
        an env variable of that name anywhere in the job would be ambiguous."""
        for draft in drafts:
            job = draft.job
            if job is None or not draft.secrets:
                continue
            levels = [("workflow env", workflow_env), ("job env", job.env)]
            levels += [(f"step #{n} env", step.env) for n, step in enumerate(job.steps, start=1) if step.env]
            for secret in draft.secrets:
                where = [level for level, env in levels if any(name == secret.name for name, _ in env)]
                if where:
                    self.error(
                        secret.start, f"{draft.path} > secret",
                        f'secret "{secret.name}" is also set as a variable by {", ".join(where)}: '
                        "a secret and an env variable cannot share a name",
                    )


def parse_workflow(text: str, filename: str = str(DEFAULT_PATH), limits: WorkflowLimits = DEFAULT_LIMITS) -> Workflow:
    """Parse and validate workflow ``text``; raise WorkflowInvalid listing every problem.

    A file over ``limits.max_file_bytes`` is refused before KDL parsing starts."""
    check_size(len(text.encode("utf-8", errors="surrogatepass")), filename, limits)
    checker = _Checker(text, filename, limits)
    try:
        nodes = parse_kdl(text)
        workflow = checker.document(nodes)
    except KdlSyntaxError as err:
        raise WorkflowInvalid(
            [WorkflowError(filename, err.line, err.col, "", f"KDL syntax error: {err.message}")]
        ) from err
    except RecursionError:  # thousands of nested nodes: no workflow is shaped like that
        raise WorkflowInvalid([WorkflowError(filename, 1, 1, "", "nodes are nested too deeply to read")]) from None
    errors = checker.errors
    if errors or workflow is None:
        raise WorkflowInvalid(errors)
    return workflow


def decode_workflow(data: bytes, filename: str = str(DEFAULT_PATH)) -> str:
    """The text of a workflow file's bytes; WorkflowInvalid (with the bad byte's position) if not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise WorkflowInvalid(
            [WorkflowError(filename, line, col, "", f"file is not UTF-8 text (bad byte at offset {err.start})")]
        ) from err


def check_size(size: int, filename: str, limits: WorkflowLimits = DEFAULT_LIMITS) -> None:
    """WorkflowInvalid if a file of ``size`` bytes is over the limit (checked before anything is parsed)."""
    if size > limits.max_file_bytes:
        raise WorkflowInvalid([WorkflowError(
            filename, 1, 1, "", f"the file is {show_bytes(size)}; the limit is "
                                f"{show_bytes(limits.max_file_bytes)} {limits.setting('max_file_bytes')}")])


def load_workflow(path: str | Path = DEFAULT_PATH, limits: WorkflowLimits = DEFAULT_LIMITS) -> Workflow:
    """Read and validate the workflow file at ``path``.

    Raises WorkflowNotFound if the file cannot be read and WorkflowInvalid
    if it is not a valid workflow.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise WorkflowNotFound(f"workflow file {str(path)!r} does not exist") from err
    except IsADirectoryError as err:
        raise WorkflowNotFound(f"{str(path)!r} is a directory, not a workflow file") from err
    except OSError as err:
        raise WorkflowNotFound(f"cannot read workflow file {str(path)!r}: {err.strerror}") from err
    check_size(len(data), str(path), limits)
    return parse_workflow(decode_workflow(data, str(path)), str(path), limits)
