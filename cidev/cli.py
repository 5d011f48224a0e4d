"""``cidev``: work with .solstice/workflow.kdl on your laptop."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from cidev.report import (
    FileResult,
    inspect_json,
    inspect_text,
    validation_json,
    validation_text,
)
from common.cli import fail, run_cli
from common.workflow import (
    DEFAULT_PATH,
    Workflow,
    WorkflowInvalid,
    WorkflowNotFound,
    load_workflow,
)

USAGE_ERROR = 2

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for machines.",
)


def resolve(path: str) -> Path:
    """The workflow file ``path`` names: a file, or a directory holding one.

    A directory may be a project (``DIR/.solstice/workflow.kdl``) or the
    ``.solstice`` directory itself (``DIR/workflow.kdl``).
    """
    candidate = Path(path)
    if candidate.is_dir():
        for inside in (candidate / DEFAULT_PATH, candidate / DEFAULT_PATH.name):
            if inside.is_file():
                return inside
        fail(f"{path!r} is a directory without a {DEFAULT_PATH} file", USAGE_ERROR)
    if not candidate.exists():
        fail(f"workflow file {path!r} does not exist", USAGE_ERROR)
    return candidate


def _load(path: Path) -> FileResult:
    try:
        return FileResult(str(path), load_workflow(path), ())
    except WorkflowInvalid as err:
        return FileResult(str(path), None, err.errors)
    except WorkflowNotFound as err:
        fail(str(err), USAGE_ERROR)
        raise  # unreachable: fail exits


def _load_valid(path: Path) -> Workflow:
    """``_load`` for commands that need a workflow: an invalid one prints its errors and exits 1."""
    result = _load(path)
    if result.workflow is None:
        for line in validation_text(result):
            click.echo(line, err=True)
        raise SystemExit(1)
    return result.workflow


@click.group(
    epilog="""\b
Examples:
  cidev validate
  cidev validate examples/*/
  cidev inspect --format json examples/pipeline
"""
)
def cli() -> None:
    """Validate, inspect and run Solstice workflows locally, no server needed."""


@cli.command(
    epilog=f"""\b
Examples:
  cidev validate                        # checks {DEFAULT_PATH}
  cidev validate ci/a.kdl ci/b.kdl
  cidev validate examples/rust          # a project directory works too
  cidev validate --format json . | jq .valid

\b
Exit status: 0 all files valid, 1 a file is invalid (every error is listed
as FILE:LINE:COL: node: message), 2 usage error (such as a missing file).
"""
)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@_FORMAT
def validate(paths: tuple[str, ...], fmt: str) -> None:
    """Check workflow files and list every problem in one pass.

    Each PATH is a workflow file, a project directory containing
    .solstice/workflow.kdl, or that .solstice directory itself
    (default: .solstice/workflow.kdl).
    """
    # Resolve every path first: a typo in one argument is a usage error that
    # should not be buried under another file's validation report.
    files = [resolve(p) for p in (paths or (str(DEFAULT_PATH),))]
    results = [_load(path) for path in files]
    if fmt == "json":
        click.echo(json.dumps(validation_json(results), indent=2))
    else:
        for result in results:
            for line in validation_text(result):
                click.echo(line)
    if not all(r.valid for r in results):
        raise SystemExit(1)


@cli.command(
    epilog="""\b
Examples:
  cidev inspect                         # .solstice/workflow.kdl
  cidev inspect examples/pipeline
  cidev inspect --format json .solstice/workflow.kdl
"""
)
@click.argument("path", required=False, metavar="[PATH]")
@_FORMAT
def inspect(path: str | None, fmt: str) -> None:
    """Show a workflow's jobs, steps, images, needs, timeouts and execution order.

    Jobs in the same stage need nothing from each other and can run in
    parallel. An invalid workflow prints its errors and exits 1.
    """
    file = resolve(path or str(DEFAULT_PATH))
    workflow = _load_valid(file)
    if fmt == "json":
        click.echo(json.dumps(inspect_json(str(file), workflow), indent=2))
    else:
        for line in inspect_text(str(file), workflow):
            click.echo(line)


@cli.command(
    epilog="""\b
Examples:
  cidev run                              # every job of .solstice/workflow.kdl at HEAD
  cidev run --dirty                      # include uncommitted changes
  cidev run examples/python --job test
  cidev run --env RUST_LOG=debug --secret NPM_TOKEN="$NPM_TOKEN"

\b
Every job runs here with the local driver, whatever its runs_on. Exit
status: 0 every job succeeded, 1 a job failed (or the workflow is invalid),
2 usage error.

\b
On a terminal, control characters the job printed are shown escaped
(ESC as \\x1b, CR as \\x0d, ...); colours pass. Piped or redirected,
job output is printed as the job wrote it; --raw prints it so everywhere.
"""
)
@click.argument("path", required=False, metavar="[PATH]")
@click.option("--job", "jobs", multiple=True, metavar="ID",
              help="Run only this job (and the jobs it needs); repeatable.")
@click.option("--dirty", is_flag=True, help="Build the working tree as it is, uncommitted changes included.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Set a variable in every job; repeatable.")
@click.option("--secret", "secrets", multiple=True, metavar="NAME=VALUE",
              help="Give a secret the workflow names; masked in all output. Repeatable.")
@click.option("--boot-timeout", type=float, default=60.0, show_default=True,
              help="Seconds a job's runner may take to call in.")
@click.option("--raw", is_flag=True, help="Print control characters of job output as they are, also on a terminal.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the workflow's caches are kept between runs [default: ~/.cache/solstice/cidev].")
@click.option("--artifacts-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy every job's artifacts here (DIR/<job>/<artifact>/...) when the run ends.")
def run(path: str | None, jobs: tuple[str, ...], dirty: bool, env: tuple[str, ...],
        secrets: tuple[str, ...], boot_timeout: float, raw: bool, cache_dir: Path | None,
        artifacts_dir: Path | None) -> None:
    """Run a workflow end to end on this machine with real runners, no server needed.

    Builds the committed HEAD of the checkout holding PATH (a workflow file
    or a project directory; default .solstice/workflow.kdl), or the working
    tree with --dirty. Jobs wait for the jobs they need; the others run in
    parallel. Prints each step's start and finish with durations, every log
    line prefixed with its job, and a summary table; on a terminal a status
    line at the bottom also shows the jobs done and each running job's step.
    """
    import asyncio

    from cidev.run_command import RunOptions, run_workflow
    from cidev.run_requests import SelectionError, parse_assignments, select_jobs

    file = resolve(path or str(DEFAULT_PATH))
    workflow = _load_valid(file)
    try:
        options = RunOptions(
            workflow_path=file, workflow=workflow, jobs=jobs, dirty=dirty,
            env=parse_assignments(env, "--env"), secrets=parse_assignments(secrets, "--secret"),
            boot_timeout=boot_timeout, raw=raw,
            cache_dir=cache_dir or Path("~/.cache/solstice/cidev").expanduser(), artifacts_dir=artifacts_dir,
        )
        select_jobs(workflow, jobs)
    except SelectionError as err:
        fail(str(err), USAGE_ERROR)
    raise SystemExit(asyncio.run(run_workflow(options, click.echo, terminal=_terminal_writer(), write=_write_block)))


@cli.command(
    epilog="""\b
Examples:
  cidev init --example pipeline /tmp/solstice-demo/pipeline
  cidev init --example failing ~/try-failing && cd ~/try-failing && cidev run
"""
)
@click.option("--example", "example", required=True, metavar="NAME",
              help="The example to start from: pipeline, python, rust or failing (the folders of examples/).")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(example: str, directory: Path) -> None:
    """Make DIRECTORY a new git repository holding an example, committed.

    The examples are folders of the Solstice checkout; cidev run and ciadm
    submit build commits, so this copies one into DIRECTORY (new or empty),
    runs git init on branch main and commits it.
    """
    import asyncio

    from cidev.init_example import InitError, init_example

    try:
        created = asyncio.run(init_example(example, directory))
    except InitError as err:
        fail(str(err), USAGE_ERROR)
        raise  # unreachable: fail exits
    click.echo(f"cidev: made the git repository {created.root} with examples/{created.example} "
               f"committed on {created.branch} ({created.sha[:12]})")
    click.echo(f"next: cd {created.root} && cidev run")


def _write_block(block: bytes) -> None:
    """Job output as it is (bytes: steps may print anything), one write per block."""
    click.echo(block, nl=False)


def _terminal_writer() -> Callable[[str], None] | None:
    """A raw writer to stdout when it is a terminal that can erase a line; else None (plain lines)."""
    if not sys.stdout.isatty() or os.environ.get("TERM", "dumb") == "dumb":
        return None

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return write


main = run_cli(cli)
