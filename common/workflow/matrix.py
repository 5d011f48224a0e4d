"""Job matrices: one ``job`` with a ``matrix`` node becomes one job per combination.

    job id="test" runs_on="${{ matrix.os }}" {
      matrix {
        os "illumos-stable" "omnios-lts"
        python "3.11" "3.12"
        exclude os="omnios-lts" python="3.11"
        include os="omnios-lts" python="3.13"
      }
      step run="python${{ matrix.python }} -m pytest"
    }

Expansion happens while the file is read, so the model holds the jobs that
run: ``test-illumos-stable-3.11`` named ``test (illumos-stable, 3.11)`` and so
on. Everything downstream (requests, the orchestrator's ``needs``, the runner,
``cidev run``) sees plain jobs; a ``needs "test"`` on another job becomes a
need of every expansion. Excludes remove every combination of the axes'
product that matches all their properties; includes then add whole
combinations (every axis named), GitHub-style but without merging rules.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

from common.workflow.checks import NodeChecker
from common.workflow.model import Env, Job, Step
from common.workflow.names import ID_RE, ID_RULE
from common.workflow.syntax import RawNode, RawValue
from common.workflow.values import STRING, typed

AXIS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
AXIS_RULE = "1-32 letters, digits and '_', not starting with a digit"
# A reference: ${{ matrix.NAME }}; NAME is matched loosely so a typo is
# reported as an unknown axis rather than silently left in the script.
REF_RE = re.compile(r"\$\{\{\s*matrix\.([^\s}]*)\s*\}\}")
_SLUG_DROP = re.compile(r"[^a-z0-9._-]+")
_WHERE = "runs_on, name, env values and steps' name, run and env values"


@dataclass(frozen=True, slots=True)
class Matrix:
    """A checked ``matrix`` node: its axes and the combinations that run, in order."""

    axes: tuple[str, ...]
    combinations: tuple[Env, ...]  # each one (axis, value) per axis, in axis order


def references(text: str) -> list[str]:
    """The axis names ``text`` refers to with ``${{ matrix.NAME }}``."""
    return REF_RE.findall(text)


def substitute(text: str, values: Env) -> str:
    """``text`` with every ``${{ matrix.NAME }}`` replaced by the combination's value."""
    if "${{" not in text:
        return text
    lookup = dict(values)
    return REF_RE.sub(lambda m: lookup[m.group(1)], text)


# -- checking the matrix node -----------------------------------------------------


def check_matrix(checker: NodeChecker, node: RawNode, path: str) -> Matrix | None:
    """Check a job's ``matrix`` node; None (with errors reported) when it is unusable."""
    mpath = f"{path} > matrix"
    checker.untagged(node, mpath)
    checker.no_args(node, mpath)
    for prop in node.props:
        checker.error(prop.start, mpath, f'unknown property "{prop.key}" (matrix takes axes as child nodes)')
    axes: dict[str, tuple[str, ...]] = {}
    axis_at: dict[str, int] = {}
    filters: list[RawNode] = []
    ok = True
    for child in node.children:
        if child.name in ("exclude", "include"):
            filters.append(child)
            continue
        values = _axis(checker, child, mpath)
        if child.name in axis_at:
            first = checker.at(axis_at[child.name])
            checker.error(child.start, mpath, f'axis "{child.name}" is given twice (first at {first})')
            ok = False
        elif values is None:
            ok = False
        else:
            axis_at[child.name] = child.start
            axes[child.name] = values
    if not axes:
        if ok:
            checker.error(node.start, mpath, 'matrix has no axes: add one such as os "a" "b"')
        return None
    size = math.prod(len(v) for v in axes.values())
    limit = checker.limits.max_jobs
    if size > limit:
        checker.error(node.start, mpath, f"matrix has {size} combinations; the limit is {limit} "
                                         f"{checker.limits.setting('max_jobs')}")
        return None
    names = tuple(axes)
    combos = [tuple(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]
    excluded: set[Env] = set()
    included: list[Env] = []
    for child in filters:
        got = _filter(checker, child, mpath, axes)
        if got is None:
            ok = False
        elif child.name == "exclude":
            excluded.update(c for c in combos if all(pair in c for pair in got))
        else:
            combo = tuple((name, dict(got)[name]) for name in names)
            if combo in included:
                checker.error(child.start, f"{mpath} > include", "this combination is included twice")
                ok = False
            included.append(combo)
    if not ok:
        return None
    kept = [c for c in combos if c not in excluded]
    for combo, child in zip(included, (f for f in filters if f.name == "include"), strict=False):
        if combo in kept:
            checker.error(child.start, f"{mpath} > include", f"{_show(combo)} is already in the matrix")
            return None
        kept.append(combo)
    if not kept:
        checker.error(node.start, mpath, "exclude removes every combination: nothing would run")
        return None
    if len(kept) > limit:
        checker.error(node.start, mpath, f"matrix has {len(kept)} combinations; the limit is {limit} "
                                         f"{checker.limits.setting('max_jobs')}")
        return None
    return Matrix(names, tuple(kept))


def _axis(checker: NodeChecker, node: RawNode, mpath: str) -> tuple[str, ...] | None:
    apath = f"{mpath} > {node.name}"
    checker.untagged(node, apath)
    checker.no_children(node, apath)
    ok = not node.children and node.tag is None
    if not AXIS_RE.fullmatch(node.name):
        checker.error(node.start, mpath, f"invalid matrix axis name {json.dumps(node.name)}: use {AXIS_RULE}")
        ok = False
    for prop in node.props:
        checker.error(prop.start, apath, f'unknown property "{prop.key}" (an axis takes its values as arguments)')
        ok = False
    seen: dict[str, int] = {}
    for value, offset in checker.string_args(node, apath):
        problem = _value_problem(checker, value)
        if problem:
            checker.error(offset, apath, f"matrix value {json.dumps(value)} {problem}")
            ok = False
        elif value in seen:
            checker.error(offset, apath, f"{json.dumps(value)} is listed twice (first at {checker.at(seen[value])})")
            ok = False
        else:
            seen[value] = offset
    if len(seen) != len(node.args):
        ok = False
    return tuple(seen) if ok and seen else None


def _value_problem(checker: NodeChecker, value: str) -> str | None:
    if not value.strip() or "\n" in value or "\r" in value or "\0" in value:
        return "must be a non-empty single line"
    if "${{" in value:
        return "must not itself contain ${{ }}"
    if len(value) > checker.limits.max_name_chars:
        return (f"is {len(value)} characters long; the limit is {checker.limits.max_name_chars} "
                f"{checker.limits.setting('max_name_chars')}")
    return None


def _filter(checker: NodeChecker, node: RawNode, mpath: str, axes: dict[str, tuple[str, ...]]) -> Env | None:
    """An ``exclude``/``include`` node's ``axis=value`` pairs, checked against the axes."""
    fpath = f"{mpath} > {node.name}"
    checker.untagged(node, fpath)
    checker.no_args(node, fpath)
    checker.no_children(node, fpath)
    ok = not node.args and not node.children and node.tag is None
    pairs: dict[str, str] = {}
    for prop in node.props:
        value, problem = typed(prop.value, STRING)
        if prop.key not in axes:
            checker.error(prop.start, fpath, f'unknown matrix axis "{prop.key}" (axes: {", ".join(axes)})')
            ok = False
        elif problem:
            checker.error(prop.value.start, fpath, f'property "{prop.key}" {problem}')
            ok = False
        elif node.name == "exclude" and value not in axes[prop.key]:
            choices = ", ".join(json.dumps(v) for v in axes[prop.key])
            checker.error(prop.value.start, fpath,
                          f'{json.dumps(value)} is not a value of axis "{prop.key}" ({choices})')
            ok = False
        elif node.name == "include" and (why := _value_problem(checker, str(value))):
            checker.error(prop.value.start, fpath, f"matrix value {json.dumps(value)} {why}")
            ok = False
        else:
            pairs[prop.key] = str(value)
    if not node.props:
        checker.error(node.start, fpath, f'{node.name} names no values: write {node.name} AXIS="value" ...')
        return None
    missing = [name for name in axes if name not in pairs and not any(p.key == name for p in node.props)]
    if ok and node.name == "include" and missing:
        checker.error(node.start, fpath, f"include must give a value for every axis: missing {', '.join(missing)}")
        return None
    return tuple(pairs.items()) if ok else None


def _show(combo: Env) -> str:
    return " ".join(f"{name}={json.dumps(value)}" for name, value in combo)


# -- references -----------------------------------------------------------------


def check_references(checker: NodeChecker, node: RawNode, path: str, axes: Collection[str] | None) -> None:
    """Every ``${{ matrix.X }}`` in job ``node``: only where values may go, only known axes.

    ``axes`` is None for a job without a (usable) matrix; references there are
    errors unless the job has a matrix node that failed its own checks.
    """
    has_matrix = any(child.name == "matrix" for child in node.children)
    for allowed, raw, where in _strings(node, path):
        text = raw.value.value
        if not isinstance(text, str) or "${{" not in text:
            continue
        for name in references(text):
            ref = "${{ matrix." + name + " }}"
            if not has_matrix:
                checker.error(raw.start, where, f"{ref} is used but the job has no matrix")
            elif not allowed:
                checker.error(raw.start, where, f"matrix values cannot be used here (only in {_WHERE})")
            elif axes is not None and name not in axes:
                checker.error(raw.start, where, f'unknown matrix axis "{name}" in {ref} (axes: {", ".join(axes)})')


def _strings(node: RawNode, path: str) -> Iterator[tuple[bool, RawValue, str]]:
    """Every string of a job node as ``(may hold references, value, node path)``."""
    for prop in node.props:
        yield prop.key in ("runs_on", "name"), prop.value, path
    for arg in node.args:
        yield False, arg, path
    steps = 0
    for child in node.children:
        if child.name == "matrix":
            continue
        if child.name == "step":
            steps += 1
            yield from _step_strings(child, f"{path} > step #{steps}")
            continue
        where = f"{path} > {child.name}"
        for prop in child.props:
            yield child.name == "env", prop.value, where
        for arg in child.args:
            yield False, arg, where


def _step_strings(node: RawNode, path: str) -> Iterator[tuple[bool, RawValue, str]]:
    for prop in node.props:
        yield prop.key in ("run", "name"), prop.value, path
    for arg in node.args:
        yield False, arg, path
    for child in node.children:
        for prop in child.props:
            yield child.name == "env", prop.value, f"{path} > {child.name}"
        for arg in child.args:
            yield child.name == "run", arg, f"{path} > {child.name}"


# -- expansion --------------------------------------------------------------------


def expansion_ids(base: str, matrix: Matrix, taken: Collection[str]) -> list[str]:
    """Job ids for each combination: ``base-value-value``, or ``base-N`` where that is not a usable id."""
    ids: list[str] = []
    for n, combo in enumerate(matrix.combinations, start=1):
        slug = "-".join(_SLUG_DROP.sub("-", value.lower()).strip("-") for _, value in combo)
        candidate = f"{base}-{slug}"
        if not ID_RE.fullmatch(candidate) or candidate in taken or candidate in ids:
            candidate = f"{base}-{n}"
        ids.append(candidate)
    return ids


def expand(job: Job, matrix: Matrix, ids: list[str]) -> list[tuple[Job, Env]]:
    """One job per combination with every reference replaced; paired with its values."""
    out = []
    for job_id, combo in zip(ids, matrix.combinations, strict=True):
        shown = ", ".join(value for _, value in combo)
        if job.name is None:
            name = f"{job.id} ({shown})"
        elif references(job.name):
            name = substitute(job.name, combo)
        else:
            name = f"{job.name} ({shown})"
        out.append((replace(
            job,
            id=job_id,
            name=name,
            runs_on=substitute(job.runs_on, combo),
            env=_env(job.env, combo),
            steps=tuple(_step(step, combo) for step in job.steps),
        ), combo))
    return out


def runs_on_problem(label: str) -> str | None:
    """Why a substituted ``runs_on`` is not a label, or None."""
    return None if ID_RE.fullmatch(label) else f"use {ID_RULE}"


def _env(env: Env, combo: Env) -> Env:
    return tuple((name, substitute(value, combo)) for name, value in env)


def _step(step: Step, combo: Env) -> Step:
    return replace(
        step,
        run=substitute(step.run, combo),
        name=substitute(step.name, combo) if step.name is not None else None,
        env=_env(step.env, combo),
    )
