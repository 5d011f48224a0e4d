"""What a job's ``needs`` say, given the jobs of its run as the store holds them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.artifacts.store import ArtifactSource
from orchestrator.store import JobRecord, JobState


def blocker(needs: Sequence[str], run: Iterable[JobRecord]) -> str | None:
    """None: every need succeeded; "": some are still to finish (or to be submitted);
    else the key of a need that ended otherwise."""
    by_key = {j.key: j for j in run}
    pending = False
    for need in needs:
        other = by_key.get(need)
        if other is None or not other.terminal:
            pending = True
        elif other.state is not JobState.SUCCEEDED:
            return need
    return "" if pending else None


def unfinished(needs: Sequence[str], run: Iterable[JobRecord]) -> list[str]:
    """The needs not finished (or never submitted), in ``needs`` order."""
    by_key = {j.key: j for j in run}
    return [n for n in needs if n not in by_key or not by_key[n].terminal]


def artifact_sources(needs: Sequence[str], run: Iterable[JobRecord]) -> tuple[ArtifactSource, ...]:
    """The attempts whose artifacts a job with ``needs`` downloads: each needed job's current
    attempt, if it succeeded (a job only starts once they all did)."""
    by_key = {j.key: j for j in run}
    return tuple(ArtifactSource(need, by_key[need].job_id, by_key[need].attempt) for need in needs
                 if need in by_key and by_key[need].state is JobState.SUCCEEDED)
