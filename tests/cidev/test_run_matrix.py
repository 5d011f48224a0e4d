"""``cidev run`` of a matrix workflow: every expansion runs with its values; needs wait for all."""

from __future__ import annotations

from tests.cidev.test_run import cidev_run, make_repo
from tests.workflow.test_matrix import TWO_BY_TWO


def test_cidev_run_runs_each_expansion_with_its_values(tmp_path):
    workflow = TWO_BY_TWO.replace("$PY -m pytest  # ", "echo run $PY on $WHERE v").replace("make package", "echo packaged")
    repo = make_repo(tmp_path / "m", workflow=workflow)
    out = cidev_run(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "[test-illumos-stable-3.11] | run python3.11 on illumos-stable v3.11" in lines
    assert "[test-illumos-stable-3.12] | run python3.12 on illumos-stable v3.12" in lines
    assert "[test-omnios-lts-3.12] | run python3.12 on omnios-lts v3.12" in lines
    assert not any("omnios-lts-3.11" in line for line in lines)
    # package needs "test": it starts after every expansion finished.
    started = lines.index("[package] job started (1 steps)")
    for job in ("test-illumos-stable-3.11", "test-illumos-stable-3.12", "test-omnios-lts-3.12"):
        assert max(i for i, line in enumerate(lines) if line.startswith(f"[{job}] job succeeded")) < started
    assert lines[-1] == "all jobs succeeded"
