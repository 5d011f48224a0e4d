"""The typed workflow model: what a ``.solstice/workflow.kdl`` means once validated.

Every instance built by the parser has passed validation, so consumers (the
scheduler, the runner, ``cidev``) never re-check ids, names or durations.
Positions in the source are deliberately not part of the model: two files that
say the same thing produce equal models.
"""

from __future__ import annotations

from dataclasses import dataclass

# An ordered list of NAME=value pairs; a tuple keeps the model hashable and frozen.
Env = tuple[tuple[str, str], ...]


def merge_env(*levels: Env) -> Env:
    """The env a step sees: later levels override earlier ones.

    Call it as ``merge_env(workflow.env, job.env, step.env)``. A name keeps the
    position where it was first set; its value is the last one given.
    Secrets are not part of any level: they never share a name with an env
    variable of their job (validation rejects that), so they are added after.
    """
    merged: dict[str, str] = {}
    for level in levels:
        merged.update(level)
    return tuple(merged.items())


@dataclass(frozen=True, slots=True)
class Step:
    """One command of a job, run by the runner inside the job's VM."""

    run: str
    name: str | None = None
    env: Env = ()
    timeout: float | None = None  # seconds
    workdir: str | None = None  # relative to the checkout
    continue_on_error: bool = False

    @property
    def title(self) -> str:
        """The step's name, or the first line of its script when it has none."""
        return self.name or self.run.strip().splitlines()[0]


@dataclass(frozen=True, slots=True)
class Artifact:
    """Files a job keeps after it ends: ``artifact "dist" path="dist/*.p5p"``.

    ``path`` is a glob relative to the checkout (a matching directory brings
    its whole tree); ``when`` says after which outcomes they are uploaded.
    """

    name: str
    path: str
    expire: float | None = None  # seconds; None = kept as long as the job's logs
    when: str = "success"  # "success", "failure" or "always"


@dataclass(frozen=True, slots=True)
class Cache:
    """A directory kept between runs: ``cache "cargo" key="cargo-{{ hash Cargo.lock }}" path="~/.cargo"``.

    ``key`` is a template (common/workflow/cachekeys.py) the runner resolves
    after checkout; ``restore_keys`` are prefixes tried, in order, when no
    cache was saved under the exact key.
    """

    name: str
    key: str
    path: str
    restore_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Job:
    """A group of steps that run in order in one throw-away VM."""

    id: str
    runs_on: str
    steps: tuple[Step, ...]
    env: Env = ()
    timeout: float | None = None  # seconds
    needs: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    caches: tuple[Cache, ...] = ()
    # Shown instead of the id where people read it; a matrix expansion's
    # default is "base (value, value)".
    name: str | None = None
    reports: tuple[str, ...] = ()  # JUnit XML globs read after the steps (report junit="...")
    required: bool = True  # counts towards the commit's greenness (integration.greenness)

    @property
    def title(self) -> str:
        """The job's name, or its id when it has none."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class Schedule:
    """``on schedule="0 3 * * *" branch="main"``: run the workflow at ``branch``'s head on each tick (UTC)."""

    cron: str
    branch: str


@dataclass(frozen=True, slots=True)
class Workflow:
    """The whole file: jobs in the order written, plus workflow-wide env and schedules."""

    jobs: tuple[Job, ...]
    name: str | None = None
    env: Env = ()
    schedules: tuple[Schedule, ...] = ()

    def job(self, job_id: str) -> Job:
        """The job with id ``job_id``; KeyError if there is none."""
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)
