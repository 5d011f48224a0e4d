"""``cidev run``: a workflow end to end on this machine, from the checkout to a summary.

Kept apart from the click command so tests and other tools can call
``run_workflow`` directly; it returns the exit status (0 = every job
succeeded, 1 = at least one did not).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cidev.run_engine import LocalRun
from cidev.run_output import Echo, LinePrinter, WriteBytes, summary_lines
from cidev.run_progress import ProgressDisplay, Write
from cidev.run_requests import workflow_requests
from cidev.run_source import resolve_source
from common.masking import Masker
from common.rpc import jobs_pb2
from common.workflow import Workflow


@dataclass(frozen=True)
class RunOptions:
    """Everything ``cidev run`` was asked to do."""

    workflow_path: Path
    workflow: Workflow
    jobs: tuple[str, ...] = ()
    dirty: bool = False
    env: Mapping[str, str] | None = None
    secrets: Mapping[str, str] | None = None
    boot_timeout: float = 60.0
    raw: bool = False  # control bytes of job output as they are, also on a terminal
    cache_dir: Path | None = None  # caches kept between runs (None: no caches)
    artifacts_dir: Path | None = None  # where the run's artifacts are copied at its end (None: dropped)

    def __repr__(self) -> str:  # secret values stay out of tracebacks
        return f"RunOptions(workflow_path={self.workflow_path!r}, jobs={self.jobs!r}, dirty={self.dirty})"


def copy_artifacts(logs: Path, requests: Sequence[jobs_pb2.JobRequest], target: Path) -> list[str]:
    """Copy each job's stored artifacts to ``target/<job key>/<artifact>/``; lines saying what went where."""
    lines = []
    for request in requests:
        stored = logs / request.job_id / "artifacts" / "1"
        if not stored.is_dir():
            continue
        for folder in sorted(p for p in stored.iterdir() if not p.name.startswith(".")):
            shutil.copytree(folder / "files", target / request.key / folder.name, dirs_exist_ok=True)
            lines.append(f"cidev: [{request.key}] artifact {folder.name!r} -> {target / request.key / folder.name}")
    return lines


async def run_workflow(options: RunOptions, echo: Echo, argv: Sequence[str] | None = None,
                       terminal: Write | None = None, write: WriteBytes | None = None) -> int:
    """Run ``options`` and print progress with ``echo``, log blocks with ``write``; the exit status.

    With ``terminal`` (a raw writer to a TTY) a status line is also kept at
    the bottom while jobs run (``run_progress``) and control bytes in job
    output are escaped unless ``options.raw``.
    """
    secrets = dict(options.secrets or {})
    masker = Masker(secrets.values())
    source = await resolve_source(options.workflow_path.resolve(), options.dirty)
    requests = workflow_requests(options.workflow, source.checkout(), origin="cidev run",
                                 jobs=options.jobs, env=options.env)
    what = "working tree snapshot" if source.dirty else "commit"
    branch = f" ({source.ref.removeprefix('refs/heads/')})" if source.ref else ""
    name = options.workflow.name or options.workflow_path.name
    echo(f"cidev: running {len(requests)} job{'s' * (len(requests) != 1)} of {name!r} "
         f"on {what} {source.sha[:12]}{branch} of {source.root}")
    if source.uncommitted:
        files = f"{source.uncommitted} file{'s' * (source.uncommitted != 1)}"
        echo(f"cidev: warning: {files} changed or new in the working tree are not part of this run: it builds "
             f"commit {source.sha[:12]}, with the workflow file as it is on disk; --dirty builds the working "
             "tree as it is")
    labels = sorted({r.runs_on for r in requests})
    echo(f"cidev: every job runs locally on this machine with the local driver, whatever its runs_on "
         f"({', '.join(labels)})")
    for request in requests:
        missing = [n for n in request.secrets if n not in secrets]
        if missing:
            echo(f"cidev: [{request.key}] secret{'s' * (len(missing) > 1)} {', '.join(missing)} not given "
                 f"(--secret NAME=VALUE); the job runs without")
    escape = terminal is not None and not options.raw
    progress = ProgressDisplay(terminal, masker, len(requests), write_bytes=write,
                               escape=escape) if terminal is not None else None
    with tempfile.TemporaryDirectory(prefix="cidev-run-") as tmp:
        async with LocalRun(Path(tmp), secrets=secrets, boot_timeout=options.boot_timeout, argv=argv,
                            cache_dir=options.cache_dir) as run:
            if progress is None:
                results = await run.run(requests, LinePrinter(echo, masker, write))
            else:
                ticker = asyncio.create_task(progress.tick(), name="cidev progress line")
                try:
                    results = await run.run(requests, progress)
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
                    progress.close()
        if options.artifacts_dir is not None:
            for line in copy_artifacts(Path(tmp) / "logs", requests, options.artifacts_dir):
                echo(line)
    echo("")
    for line in summary_lines(results, masker):
        echo(line)
    return 0 if all(r.succeeded for r in results) else 1
