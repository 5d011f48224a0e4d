"""The ``needs`` graph between jobs: unknown ids, cycles and execution stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.workflow.model import Job, Workflow


def find_cycles(needs: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every distinct cycle in ``needs`` (job id -> ids it needs), each once.

    A cycle is returned as the path that closes it, starting and ending at the
    member that comes first in ``needs``' order: ``["a", "b", "a"]``. Ids that
    are not keys of ``needs`` are ignored (they are reported as unknown).
    """
    remaining = _unsortable(needs)
    order = {job_id: n for n, job_id in enumerate(needs)}
    cycles: list[list[str]] = []
    seen_members: set[frozenset[str]] = set()
    for start in needs:
        if start not in remaining:
            continue
        # Follow needs inside the unsortable set until a node repeats: every
        # unsortable node either sits on a cycle or leads into one.
        path = [start]
        index = {start: 0}
        node = start
        while True:
            node = next(n for n in needs[node] if n in remaining)
            if node in index:
                loop = path[index[node] :]
                break
            index[node] = len(path)
            path.append(node)
        members = frozenset(loop)
        if members in seen_members:
            continue
        seen_members.add(members)
        first = min(loop, key=order.__getitem__)
        at = loop.index(first)
        rotated = loop[at:] + loop[:at]
        cycles.append([*rotated, first])
    return cycles


def _unsortable(needs: Mapping[str, Sequence[str]]) -> set[str]:
    """Ids left over by Kahn's algorithm: on a cycle or depending on one."""
    pending = {j: {n for n in deps if n in needs} for j, deps in needs.items()}
    dependents: dict[str, list[str]] = {j: [] for j in needs}
    for job_id, deps in pending.items():
        for dep in deps:
            dependents[dep].append(job_id)
    ready = [j for j, deps in pending.items() if not deps]
    while ready:
        done = ready.pop()
        for later in dependents[done]:
            deps = pending[later]
            deps.discard(done)
            if not deps:
                ready.append(later)
        del pending[done]
    return set(pending)


def execution_stages(workflow: Workflow) -> list[list[Job]]:
    """Jobs grouped into stages; every job runs after all the jobs it needs.

    Jobs in one stage need nothing from each other and can run in parallel.
    A job lands in the earliest stage its needs allow; within a stage jobs
    keep the order of the file.
    """
    stage_of: dict[str, int] = {}
    by_id = {job.id: job for job in workflow.jobs}

    def stage(job: Job) -> int:
        # Iterative depth-first walk: 1,000-job chains would overflow recursion.
        found = stage_of.get(job.id)
        if found is not None:
            return found
        stack = [job.id]
        while stack:
            current = by_id[stack[-1]]
            missing = next((n for n in current.needs if n not in stage_of), None)
            if missing is not None:
                # One dependency at a time keeps the stack a real path, so
                # meeting an id already on it means a cycle.
                if missing in stack:
                    raise ValueError(f"needs cycle through job {current.id!r}")
                stack.append(missing)
                continue
            stage_of[current.id] = 1 + max((stage_of[n] for n in current.needs), default=-1)
            stack.pop()
        return stage_of[job.id]

    stages: list[list[Job]] = []
    for job in workflow.jobs:
        level = stage(job)
        while len(stages) <= level:
            stages.append([])
        stages[level].append(job)
    return stages
