"""A workflow with schedules: ``cidev inspect`` shows each with its next tick; ``cidev run`` runs its jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from cidev.cli import cli
from tests.cidev.test_run import cidev_run, make_repo

NIGHTLY = """\
workflow name="nightly" {
  on schedule="0 3 * * *" branch="main"
  on schedule="@weekly" branch="release/1.x"
  job id="build" runs_on="illumos-stable" {
    step run="echo nightly build"
  }
}
"""


def test_inspect_lists_schedules_with_their_next_tick(tmp_path: Path):
    path = tmp_path / "workflow.kdl"
    path.write_text(NIGHTLY)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.fullmatch(r"schedule: 0 3 \* \* \* on main \(UTC; next \d{4}-\d\d-\d\dT03:00Z\)", lines[1])
    assert re.fullmatch(r"schedule: @weekly on release/1.x \(UTC; next \d{4}-\d\d-\d\dT00:00Z\)", lines[2])
    doc = json.loads(CliRunner().invoke(cli, ["inspect", "--format", "json", str(path)]).output)
    assert [(s["cron"], s["branch"]) for s in doc["schedules"]] == [("0 3 * * *", "main"), ("@weekly", "release/1.x")]


def test_cidev_run_runs_a_scheduled_workflow_now(tmp_path: Path):
    repo = make_repo(tmp_path / "n", workflow=NIGHTLY)
    out = cidev_run(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[build] | nightly build" in out.stdout.splitlines()
