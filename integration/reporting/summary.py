"""What a check run or status says: a title, and a markdown summary within the limits.

GitHub caps ``output.summary`` at 65535 characters and a commit status's
description at 140; Forgejo's description is kept short for its UI. The log
tail is cut from the front (the last lines matter) to fit.
"""

from __future__ import annotations

from common.log import masker
from common.rpc import jobs_pb2
from common.workflow import WorkflowError
from common.workflow.limits import show_bytes
from integration.reporting.states import StateSpec

SUMMARY_LIMIT = 65535
MAX_ANNOTATIONS = 50
_STEP_STATES = {v: n.removeprefix("STEP_STATE_").lower() for n, v in jobs_pb2.StepState.items()}
_ICONS = {"succeeded": "✅", "failed": "❌", "skipped": "⏭", "running": "⏳"}


def failing_step(event: jobs_pb2.JobEvent) -> jobs_pb2.StepResult | None:
    for step in event.steps:
        if step.state == jobs_pb2.STEP_STATE_FAILED:
            return step
    return None


def title(event: jobs_pb2.JobEvent, spec: StateSpec) -> str:
    if spec.name == "failed":
        step = failing_step(event)
        if step is not None:
            return f"Failed: step {step.name!r} exited with {step.exit_code}"
        return "Failed" + (f": {event.reason}" if event.reason else "")
    if spec.name == "errored":
        return "Errored (Solstice failed, not your code)" + (f": {event.reason}" if event.reason else "")
    return spec.name.capitalize()


def short_description(event: jobs_pb2.JobEvent, spec: StateSpec, limit: int = 140) -> str:
    """A one-line description for commit statuses."""
    text = masker.mask(title(event, spec)).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in ``lines`` (so the log cannot close it)."""
    ticks = 3
    for line in lines:
        count = 0
        for ch in line:
            count = count + 1 if ch == "`" else 0
            ticks = max(ticks, count + 1)
    return "`" * ticks


def summary(event: jobs_pb2.JobEvent, spec: StateSpec, details_url: str, limit: int = SUMMARY_LIMIT) -> str:
    """Markdown: the step table, the reason, and as much of the failing step's log tail as fits."""
    head: list[str] = []
    if event.steps:
        head += ["| | step | result | exit | time |", "|---|---|---|---|---|"]
        for step in sorted(event.steps, key=lambda s: s.index):
            state = _STEP_STATES.get(step.state, "unknown")
            name = step.name.replace("|", "\\|")
            head.append(
                f"| {_ICONS.get(state, '')} | {name} | {state} | {step.exit_code} | {step.duration_seconds:.1f}s |"
            )
        head.append("")
    if event.reason:
        head += [f"**Reason:** {event.reason}", ""]
    head.append(f"[Full log]({details_url})")
    if event.artifacts:
        shown = ", ".join(f"[{a.name}]({details_url}#artifacts) ({a.files} files, {show_bytes(a.bytes)})"
                          for a in event.artifacts)
        head += ["", f"**Artifacts:** {shown}"]
    text = masker.mask("\n".join(head))
    tail = [masker.mask(line) for line in event.log_tail]
    if not tail:
        return text[:limit]
    step = failing_step(event)
    label = f"Last lines of step {step.name!r}:" if step else "Last log lines:"
    fence = _fence(tail)
    fixed = f"{text}\n\n{label}\n{fence}\n\n{fence}"
    budget = limit - len(fixed)
    kept: list[str] = []
    for line in reversed(tail):
        if len(line) + 1 > budget:
            break
        kept.append(line)
        budget -= len(line) + 1
    kept.reverse()
    if not kept:
        return text[:limit]
    return f"{text}\n\n{label}\n{fence}\n" + "\n".join(kept) + f"\n{fence}"


def workflow_errors_summary(errors: tuple[WorkflowError, ...], limit: int = SUMMARY_LIMIT) -> str:
    lines = [f"The workflow file has {len(errors)} error{'s' if len(errors) != 1 else ''}:", "", "```"]
    for error in errors:
        lines.append(str(error))
    lines.append("```")
    text = "\n".join(lines)
    if len(text) > limit:
        text = text[: limit - 4] + "\n```"
    return text
