"""``solstice-runner``: the agent inside each job VM."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import click

# Steps run as another user start with fork() rather than vfork() (Python
# needs a real fork to change credentials), and gRPC's fork handlers then
# run in a child of this multi-threaded process and crash it (SIGSEGV before
# the step's exec). The runner never uses gRPC in a child: switch them off
# before gRPC starts.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from common.bootstrap import BootstrapError  # noqa: E402 - after the gRPC setting above
from common.cli import logging_options, run_cli  # noqa: E402
from runner import bootstrap  # noqa: E402
from runner.agent import EXIT_NO_BOOTSTRAP, run_job  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402


@click.group(
    epilog="""\b
Examples:
  solstice-runner run --env-file /etc/solstice/runner.env
  solstice-runner run --orchestrator 10.0.0.1:50051 --token "$TOKEN"
"""
)
def cli() -> None:
    """Run the one job this VM was booted for and stream its logs home."""


@cli.command(
    epilog="""\b
Examples:
  solstice-runner run                                  # env, then /etc/solstice/runner.env, then NoCloud seed
  solstice-runner run --env-file /etc/solstice/runner.env
  solstice-runner run --nocloud /var/lib/cloud/seed/nocloud
  SOLSTICE_RUNNER_ORCHESTRATOR=10.0.0.1:50051 SOLSTICE_RUNNER_TOKEN=... solstice-runner run

\b
Exit codes:
  0 job ran and its result was delivered   3 no bootstrap found
  1 runner error                           4 token refused
  5 orchestrator unreachable past --offline-limit (logs kept in the spool)
"""
)
@click.option("--orchestrator", metavar="HOST:PORT", help="Orchestrator gRPC address (beats the environment).")
@click.option("--token", metavar="TOKEN", help="The job token (beats the environment).")
@click.option("--env-file", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="KEY=VALUE file with SOLSTICE_RUNNER_ORCHESTRATOR/_TOKEN [default: /etc/solstice/runner.env].")
@click.option("--nocloud", type=click.Path(path_type=Path, file_okay=False), multiple=True,
              help="NoCloud seed directory holding user-data [default: the usual cloud-init seed paths].")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Workspace and log spool directory [default: $SOLSTICE_RUNNER_DIR or $TMPDIR/solstice-runner].")
@click.option("--offline-limit", type=float, default=300.0, show_default=True,
              help="Seconds without reaching the orchestrator before giving up, until it hands out its own "
                   "(GetJob: its node's patience with a silent runner).")
@click.option("--batch-bytes", type=int, default=256 * 1024, show_default=True, help="Seal a log batch at this size.")
@click.option("--batch-delay", type=float, default=0.05, show_default=True,
              help="Seconds a log line may wait for its batch to fill.")
@click.option("--step-user", default=None, metavar="USER",
              help="Run steps as USER; the runner must be root [default: $SOLSTICE_RUNNER_STEP_USER].")
@click.option("--pipe-grace", type=float, default=5.0, show_default=True,
              help="Seconds a step's output is still read after its process exited.")
@logging_options
def run(orchestrator: str | None, token: str | None, env_file: tuple[Path, ...], nocloud: tuple[Path, ...],
        root: Path | None, offline_limit: float, batch_bytes: int, batch_delay: float,
        step_user: str | None, pipe_grace: float) -> None:
    """Fetch this VM's job, check out its commit, run its steps and report home."""
    kwargs = {}
    if env_file:
        kwargs["env_files"] = env_file
    if nocloud:
        kwargs["nocloud_dirs"] = nocloud
    try:
        boot = bootstrap.resolve(orchestrator=orchestrator, token=token, env=os.environ, **kwargs)
    except BootstrapError as err:
        click.echo(f"ERROR: {err}", err=True)
        sys.exit(EXIT_NO_BOOTSTRAP)
    settings = RunnerSettings(offline_limit=offline_limit, batch_bytes=batch_bytes, batch_delay=batch_delay,
                              pipe_grace=pipe_grace)
    changes: dict[str, object] = {}
    if root is not None:
        changes["root"] = root
    if step_user is not None:
        changes["step_user"] = step_user
    settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    sys.exit(asyncio.run(run_job(boot, settings)))


main = run_cli(cli)


if __name__ == "__main__":
    main()
