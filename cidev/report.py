"""How ``cidev`` shows workflows and their errors: text tables and JSON documents."""

from __future__ import annotations

from dataclasses import dataclass

from common.durations import format_duration
from common.workflow import Env, Job, Step, Workflow, WorkflowError, execution_stages


@dataclass(frozen=True, slots=True)
class FileResult:
    """The outcome of validating one file."""

    path: str
    workflow: Workflow | None
    errors: tuple[WorkflowError, ...]

    @property
    def valid(self) -> bool:
        return self.workflow is not None and not self.errors


def _timeout(seconds: float | None) -> str | None:
    return format_duration(seconds) if seconds is not None else None


def error_json(error: WorkflowError) -> dict[str, object]:
    """One validation error as a JSON object."""
    return {
        "file": error.file,
        "line": error.line,
        "col": error.col,
        "node": error.path,
        "message": error.message,
        "text": str(error),
    }


def validation_json(results: list[FileResult]) -> dict[str, object]:
    """The ``cidev validate --format json`` document."""
    return {
        "valid": all(r.valid for r in results),
        "files": [
            {
                "path": r.path,
                "valid": r.valid,
                "jobs": len(r.workflow.jobs) if r.workflow else 0,
                "errors": [error_json(e) for e in r.errors],
            }
            for r in results
        ],
    }


def validation_text(result: FileResult) -> list[str]:
    """Lines ``cidev validate`` prints for one file."""
    if result.valid and result.workflow is not None:
        jobs = result.workflow.jobs
        steps = sum(len(job.steps) for job in jobs)
        return [f"ok {result.path} ({_count(len(jobs), 'job')}, {_count(steps, 'step')})"]
    lines = [str(error) for error in result.errors]
    lines.append(f"invalid {result.path} ({_count(len(result.errors), 'error')})")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _env_json(env: Env) -> dict[str, str]:
    return dict(env)


def _step_json(step: Step) -> dict[str, object]:
    return {
        "name": step.name,
        "title": step.title,
        "run": step.run,
        "workdir": step.workdir,
        "timeout": _timeout(step.timeout),
        "timeout_seconds": step.timeout,
        "continue_on_error": step.continue_on_error,
        "env": _env_json(step.env),
    }


def _job_json(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "runs_on": job.runs_on,
        "needs": list(job.needs),
        "secrets": list(job.secrets),
        "timeout": _timeout(job.timeout),
        "timeout_seconds": job.timeout,
        "env": _env_json(job.env),
        "steps": [_step_json(step) for step in job.steps],
        "artifacts": [{"name": a.name, "path": a.path, "expire": _timeout(a.expire), "when": a.when}
                      for a in job.artifacts],
        "caches": [{"name": c.name, "key": c.key, "path": c.path, "restore_keys": list(c.restore_keys)}
                   for c in job.caches],
    }


def inspect_json(path: str, workflow: Workflow) -> dict[str, object]:
    """The ``cidev inspect --format json`` document."""
    return {
        "path": path,
        "name": workflow.name,
        "env": _env_json(workflow.env),
        "jobs": [_job_json(job) for job in workflow.jobs],
        "stages": [[job.id for job in stage] for stage in execution_stages(workflow)],
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        (indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip()
        for row in (header, *rows)
    ]


def _one_line(text: str, limit: int = 60) -> str:
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    more = len(lines) > 1
    if len(first) > limit:
        first, more = first[: limit - 3], True
    return first + (" ..." if more else "")


def inspect_text(path: str, workflow: Workflow) -> list[str]:
    """The readable ``cidev inspect`` report: jobs, steps and execution stages."""
    title = workflow.name or "(unnamed)"
    lines = [f"workflow {title}  ({path})"]
    if workflow.env:
        lines.append("env: " + ", ".join(name for name, _ in workflow.env))
    lines.append("")
    rows = [
        (
            job.id,
            job.runs_on,
            ", ".join(job.needs) or "-",
            _timeout(job.timeout) or "-",
            ", ".join(job.secrets) or "-",
            str(len(job.steps)),
        )
        for job in workflow.jobs
    ]
    lines += _table(("JOB", "RUNS ON", "NEEDS", "TIMEOUT", "SECRETS", "STEPS"), rows)
    for job in workflow.jobs:
        lines += ["", f"job {job.id}:"]
        if job.env:
            lines.append("  env: " + ", ".join(name for name, _ in job.env))
        step_rows = [
            (
                f"{n}.",
                step.name or "-",
                _timeout(step.timeout) or "-",
                ("continue" if step.continue_on_error else "stop"),
                step.workdir or "-",
                ", ".join(name for name, _ in step.env) or "-",
                _one_line(step.run),
            )
            for n, step in enumerate(job.steps, start=1)
        ]
        header = ("#", "STEP", "TIMEOUT", "ON ERROR", "WORKDIR", "ENV", "RUN")
        lines += _table(header, step_rows, indent="  ")
        for a in job.artifacts:
            expire = f", expires after {_timeout(a.expire)}" if a.expire else ""
            lines.append(f"  artifact {a.name}: {a.path} (after {a.when}{expire})")
        for c in job.caches:
            prefixes = ", ".join(k + "*" for k in c.restore_keys)
            fallback = f", else {prefixes}" if prefixes else ""
            lines.append(f"  cache {c.name}: {c.path} keyed {c.key}{fallback}")
    lines += ["", "execution order:"]
    for n, stage in enumerate(execution_stages(workflow), start=1):
        lines.append(f"  stage {n}: " + ", ".join(job.id for job in stage))
    return lines
