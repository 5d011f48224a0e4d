"""The model back to canonical KDL: one way to write every workflow.

Canonical form: properties in a fixed order, two-space indent, one ``env``
node per level (properties in model order), ``needs`` and ``secret`` as one
node each, single-line scripts as ``run="..."`` and multi-line scripts as a
``run`` child node holding a raw string when that can be written literally.
"""

from __future__ import annotations

from common.durations import format_duration
from common.workflow.model import Env, Job, Step, Workflow

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def quote(text: str) -> str:
    """``text`` as a KDL (v1) quoted string."""
    out = []
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " " or ch == "\x7f" or "\x80" <= ch <= "\x9f":
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _raw(text: str) -> str | None:
    """``text`` as a KDL raw string, or None if it cannot be written as one.

    Only newlines are allowed as control characters: a raw string holds its
    text verbatim, and stray control characters would not survive an editor.
    """
    if any((ch < " " and ch != "\n") or ch == "\x7f" or "\x80" <= ch <= "\x9f" for ch in text):
        return None
    hashes = "#"
    while f'"{hashes}' in text:
        hashes += "#"
    return f'r{hashes}"{text}"{hashes}'


def _key(name: str) -> str:
    # Env names are [A-Za-z_][A-Za-z0-9_]*, all bare KDL identifiers except
    # the keywords, which must be quoted.
    if name in ("true", "false", "null") or not set(name) <= _BARE_KEY_CHARS:
        return quote(name)
    return name


def _env(env: Env, indent: str) -> list[str]:
    if not env:
        return []
    return [indent + "env " + " ".join(f"{_key(k)}={quote(v)}" for k, v in env)]


def _names(node: str, names: tuple[str, ...], indent: str) -> list[str]:
    if not names:
        return []
    return [indent + node + " " + " ".join(quote(n) for n in names)]


def _step(step: Step, indent: str) -> list[str]:
    head = indent + "step"
    if step.name is not None:
        head += f" name={quote(step.name)}"
    raw = _raw(step.run) if "\n" in step.run else None
    if raw is None:
        head += f" run={quote(step.run)}"
    if step.workdir is not None:
        head += f" workdir={quote(step.workdir)}"
    if step.timeout is not None:
        head += f" timeout={quote(format_duration(step.timeout))}"
    if step.continue_on_error:
        head += " continue_on_error=true"
    body = _env(step.env, indent + "  ")
    if raw is not None:
        body.append(f"{indent}  run {raw}")
    if not body:
        return [head]
    return [head + " {", *body, indent + "}"]


def _job(job: Job, indent: str) -> list[str]:
    head = f"{indent}job id={quote(job.id)}"
    if job.name is not None:
        head += f" name={quote(job.name)}"
    head += f" runs_on={quote(job.runs_on)}"
    if job.timeout is not None:
        head += f" timeout={quote(format_duration(job.timeout))}"
    if not job.required:
        head += " required=false"
    inner = indent + "  "
    lines = [head + " {"]
    lines += _names("needs", job.needs, inner)
    lines += _names("secret", job.secrets, inner)
    lines += _env(job.env, inner)
    lines += [f"{inner}report junit={quote(pattern)}" for pattern in job.reports]
    for step in job.steps:
        lines += _step(step, inner)
    for artifact in job.artifacts:
        line = f"{inner}artifact {quote(artifact.name)} path={quote(artifact.path)}"
        if artifact.expire is not None:
            line += f" expire={quote(format_duration(artifact.expire))}"
        if artifact.when != "success":
            line += f" when={quote(artifact.when)}"
        lines.append(line)
    for cache in job.caches:
        line = f"{inner}cache {quote(cache.name)} key={quote(cache.key)} path={quote(cache.path)}"
        if cache.restore_keys:
            line += f" restore_keys={quote(','.join(cache.restore_keys))}"
        lines.append(line)
    lines.append(indent + "}")
    return lines


def render_workflow(workflow: Workflow) -> str:
    """Canonical KDL text for ``workflow``; ``parse_workflow`` reads it back equal."""
    head = "workflow"
    if workflow.name is not None:
        head += f" name={quote(workflow.name)}"
    lines = [head + " {"]
    lines += _env(workflow.env, "  ")
    lines += [f"  on schedule={quote(s.cron)} branch={quote(s.branch)}" for s in workflow.schedules]
    for job in workflow.jobs:
        lines += _job(job, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"
